/**
 * The real-time lane: a BullMQ Worker on `rt.<pool>` that runs each request
 * through the model backend and pushes deltas and the result straight onto
 * the waiting producer's inbox. A request whose deadline has passed is never
 * started; one that is cancelled or outlives its deadline is aborted.
 * Real-time jobs are never retried by BullMQ: the caller is waiting, and a
 * retry after a failure would answer too late to matter.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { laneNames, RealtimeWindow } from '../common/contracts/heartbeat.ts';
import { REALTIME_JOB_NAME, realtimeJobSchema, type Reply } from '../common/contracts/realtime.ts';
import { FleetError, toFleetError, type ErrorCode } from '../common/errors.ts';
import { LatencyWindow } from '../common/latency-window.ts';
import type { Logger } from '../common/logger.ts';
import { settleWithin } from '../common/process.ts';
import type { RedisClient } from '../common/redis.ts';
import { queueName } from '../common/topology.ts';
import { REALTIME_PRIORITY, type ModelBackend } from './backends/backend.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { ReplyWriter } from './reply-writer.ts';
import { workUnits, type WorkMeter } from './work-window.ts';

export interface RealtimeLaneDeps {
  prefix: string;
  pool: string;
  workerId: string;
  concurrency: number;
  /** BullMQ Workers sharing the slots (see below). */
  fetchers: number;
  /** Width of the latency window the heartbeat reports (ms). */
  latencyWindowMs: number;
  connection: RedisClient;
  backend: ModelBackend;
  replies: ReplyWriter;
  metrics: WorkerMetrics;
  /** Where each answered request's work units go (the heartbeat's `work`); none in some tests. */
  work?: WorkMeter;
  logger: Logger;
}

export interface Lane {
  readonly name: (typeof laneNames)[number];
  readonly concurrency: number;
  inFlight(): number;
  /** Asks a running request to stop (caller gone). No-op if it is not here. */
  cancel(requestId: string): void;
  /** Stops taking jobs; in-flight ones get `graceMs` before they are aborted. */
  close(graceMs: number): Promise<void>;
  /** Recent real-time latencies, for the heartbeat (the real-time lane only). */
  latency?(now: number): RealtimeWindow;
}

/** Age (ms) of the oldest enqueue time among `pending` (0 when empty); a few running requests at most. */
function oldestPending(pending: ReadonlyMap<string, number>, now: number): number {
  let oldest = now;
  for (const enqueuedAt of pending.values()) oldest = Math.min(oldest, enqueuedAt);
  return Math.max(0, now - oldest);
}

/** Why a request stopped early, from which signal fired first. */
export function abortCode(deadlinePassed: boolean, draining: boolean): ErrorCode {
  if (deadlinePassed) return 'deadline_exceeded';
  if (draining) return 'unavailable';
  return 'cancelled';
}

export function startRealtimeLane(deps: RealtimeLaneDeps): Lane {
  const { pool, backend, replies, metrics, workerId } = deps;
  const log = deps.logger.child({ lane: 'realtime', queue: queueName('rt', pool) });
  let running = 0;
  let draining = false;
  const firstTokenWindow = new LatencyWindow(deps.latencyWindowMs);
  /** Enqueue times of running requests still waiting for their first token (for the heartbeat). */
  const pendingFirstToken = new Map<string, number>();
  const queueWaitWindow = new LatencyWindow(deps.latencyWindowMs);

  const processor = async (job: Job, _token?: string, signal?: AbortSignal): Promise<{ runMs: number }> => {
    const startedAt = Date.now();
    const parsed = realtimeJobSchema.safeParse(job.data);
    if (!parsed.success || job.name !== REALTIME_JOB_NAME) {
      metrics.jobs.inc({ pool, lane: 'realtime', outcome: 'bad_request' });
      throw new UnrecoverableError(`bad_request: not a real-time job: ${parsed.error?.issues[0]?.message ?? job.name}`);
    }
    const req = parsed.data;
    const jobLog = log.child({ jobId: req.requestId });
    const reply = (r: Reply): Promise<void> => replies.send(req.replyTo, r);
    metrics.queueWaitSeconds.observe({ pool, lane: 'realtime' }, Math.max(0, startedAt - req.enqueuedAt) / 1000);

    const fail = async (err: FleetError): Promise<never> => {
      metrics.jobs.inc({ pool, lane: 'realtime', outcome: err.code });
      metrics.runSeconds.observe({ pool, lane: 'realtime', outcome: err.code }, (Date.now() - startedAt) / 1000);
      await reply({ i: req.requestId, k: 'error', code: err.code, message: err.message }).catch((e: unknown) =>
        jobLog.warn({ err: e }, 'could not deliver the error reply'),
      );
      throw new UnrecoverableError(`${err.code}: ${err.message}`);
    };

    if (startedAt >= req.deadlineAt) {
      // It never got a token: the wait so far is a lower bound of what its caller saw.
      firstTokenWindow.record(startedAt - req.enqueuedAt, startedAt);
      queueWaitWindow.record(startedAt - req.enqueuedAt, startedAt);
      return fail(new FleetError('deadline_exceeded', 'the deadline passed before a worker could start the request'));
    }
    if (!backend.tasks.has(req.input.task)) {
      return fail(
        new FleetError('unsupported_task', `pool ${pool} (${backend.kind}) cannot run task ${req.input.task}`),
      );
    }

    // One controller and a plain timer: AbortSignal.timeout + any() cost ~20 µs a job.
    const controller = new AbortController();
    let deadlinePassed = false;
    const deadlineTimer = setTimeout(() => {
      deadlinePassed = true;
      controller.abort(new FleetError('deadline_exceeded', 'deadline passed'));
    }, req.deadlineAt - startedAt);
    const onCancel = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onCancel, { once: true });
    const abort = controller.signal;
    let firstTokenAt: number | undefined;
    // Sampled the moment it happens: a long answer's first token must reach the heartbeat window
    // while it still says something about now, not seconds later when the answer ends.
    const markFirstToken = (at: number): number => {
      if (firstTokenAt === undefined) {
        firstTokenAt = at;
        pendingFirstToken.delete(req.requestId);
        firstTokenWindow.record(at - req.enqueuedAt, at);
      }
      return firstTokenAt;
    };
    const onDelta = (text: string): void => {
      if (firstTokenAt === undefined) markFirstToken(Date.now());
      if (req.stream && text !== '') {
        reply({ i: req.requestId, k: 'delta', text }).catch((e: unknown) => jobLog.warn({ err: e }, 'delta lost'));
      }
    };

    running++;
    pendingFirstToken.set(req.requestId, req.enqueuedAt);
    metrics.inFlight.inc({ pool, lane: 'realtime' });
    try {
      const output = await backend.run(req.input, { signal: abort, onDelta, priority: REALTIME_PRIORITY });
      const doneAt = Date.now();
      deps.work?.realtime(workUnits(output), doneAt);
      const firstAt = markFirstToken(doneAt);
      const timings = {
        queueMs: startedAt - req.enqueuedAt,
        firstTokenMs: firstAt - startedAt,
        runMs: doneAt - startedAt,
      };
      queueWaitWindow.record(timings.queueMs, doneAt);
      await reply({ i: req.requestId, k: 'done', output, timings, worker: workerId });
      metrics.jobs.inc({ pool, lane: 'realtime', outcome: 'ok' });
      metrics.runSeconds.observe({ pool, lane: 'realtime', outcome: 'ok' }, timings.runMs / 1000);
      metrics.firstTokenSeconds.observe({ pool, lane: 'realtime' }, timings.firstTokenMs / 1000);
      return { runMs: timings.runMs };
    } catch (err) {
      if (err instanceof UnrecoverableError) throw err;
      const fleetErr = abort.aborted
        ? new FleetError(
            abortCode(deadlinePassed, draining),
            `request stopped: ${abortCode(deadlinePassed, draining)}`,
            { cause: err },
          )
        : toFleetError(err, 'backend_failed');
      jobLog.warn({ code: fleetErr.code, err }, 'real-time request failed');
      return await fail(fleetErr);
    } finally {
      clearTimeout(deadlineTimer);
      signal?.removeEventListener('abort', onCancel);
      running--;
      // Ended without a token (failed, cancelled, out of time): what its caller waited still counts.
      if (firstTokenAt === undefined) markFirstToken(Date.now());
      metrics.inFlight.dec({ pool, lane: 'realtime' });
    }
  };

  // BullMQ's worker loop fetches one job per round trip; behind the interconnect
  // that caps a worker at ~1 job per RTT. Several fetchers share the slots.
  const fetchers = Math.min(deps.fetchers, deps.concurrency);
  const workers = Array.from({ length: fetchers }, (_, i) => {
    const worker = new Worker(queueName('rt', pool), processor, {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency: Math.floor(deps.concurrency / fetchers) + (i < deps.concurrency % fetchers ? 1 : 0),
      name: workerId,
      // Keep a short, bounded history for Bull Board; the answer itself went to the inbox.
      removeOnComplete: { count: 200 },
      removeOnFail: { count: 5000, age: 7 * 24 * 3600 },
    });
    worker.on('error', (err) => log.error({ err }, 'real-time worker error'));
    return worker;
  });

  return {
    name: 'realtime',
    concurrency: deps.concurrency,
    inFlight: () => running,
    latency: (now) => ({
      windowMs: deps.latencyWindowMs,
      firstToken: firstTokenWindow.counts(now),
      queueWait: queueWaitWindow.counts(now),
      oldestPendingMs: oldestPending(pendingFirstToken, now),
    }),
    cancel: (requestId) => {
      for (const worker of workers) worker.cancelJob(requestId, 'cancelled');
    },
    async close(graceMs) {
      draining = true;
      const closing = Promise.all(workers.map((w) => w.close()));
      const timer = setTimeout(() => {
        for (const worker of workers) worker.cancelAllJobs('draining');
      }, graceMs);
      try {
        // Aborted jobs settle within a moment of the grace period; beyond that Redis is gone.
        if (!(await settleWithin(closing, graceMs + 3000))) {
          log.warn('lane did not close cleanly (Redis unreachable?); forcing');
          await settleWithin(Promise.all(workers.map((w) => w.close(true))), 1000);
        }
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
