/**
 * The bulk lane: a BullMQ Worker on `bulk.<pool>` that runs batch chunks
 * (runChunk) and settles each one once in the batch's state.
 *
 * How a chunk job ends, and what BullMQ does with it:
 * - done / already_done: settled `done` with its line counts; the job
 *   completes with the ChunkResult (Bull Board shows it).
 * - the batch is no longer in_progress (cancel, expiry): settled `skipped`
 *   without touching storage; the job completes with `{ status: 'skipped' }`.
 * - yielded (the lane is draining, or the chunk was preempted): the
 *   finished lines are a segment (chunk-runner.ts), recorded in the batch
 *   (BatchStore.recordSegment: that record is what counts), copied into the
 *   job data (job.updateData), and the job goes back to the queue without
 *   spending an attempt (moveToDelayed + DelayedError): at once when
 *   draining, after `preemptDelayMs` when preempted. It runs again later
 *   from where the recorded segments end.
 * - conflict: another run of the same chunk (a stalled lock) recorded
 *   progress first, so this run's range no longer follows the record; its
 *   work is dropped (its parts are never merged) and the job goes back to
 *   the queue, to resume from the record.
 * - superseded: another run settled the chunk first; the job completes.
 * - invalid job data or a storage error no retry can fix: settled `failed`
 *   with the reason, and UnrecoverableError (no retries).
 * - anything else (storage unavailable, Redis, a backend that broke the
 *   whole micro-batch): rethrown, so BullMQ retries with the job's backoff;
 *   on the last attempt the chunk is settled `failed` first, so finalisation
 *   reports its lines as chunk_failed rather than waiting for it forever.
 * Settlement is once-only (BatchStore.settleChunk / settleLastPart), so a
 * chunk run twice counts once.
 *
 * Preemption (common/preemption.ts): the lane listens on its pool's channel
 * (one subscriber connection per lane, so per worker process) and, per
 * request, claims tokens one by one for its most recently started chunks
 * (the least work to set aside) and aborts each claimed one with reason
 * 'preempted'. Claims run one request at a time, so a chunk is never claimed
 * twice. A chunk that finishes between its claim and its abort spends the
 * token without yielding: the count is "at most N", exact unless that race.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Cluster } from 'ioredis';
import type { ZodError } from 'zod';
import type { BatchStore, ChunkOutcome } from '../../common/batch/batch-state.ts';
import type { PoolConfig } from '../../common/config.ts';
import { chunkJobSchema, type ChunkJob } from '../../common/contracts/batch.ts';
import { FleetError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { claimPreemption, preemptKeys, preemptMessageSchema, type PreemptMessage } from '../../common/preemption.ts';
import { settleWithin } from '../../common/process.ts';
import type { RedisClient } from '../../common/redis.ts';
import { isStorageError, type StorageErrorCode } from '../../common/storage/index.ts';
import { queueName } from '../../common/topology.ts';
import type { ModelBackend } from '../backends/backend.ts';
import type { WorkerMetrics } from '../metrics.ts';
import type { Lane } from '../realtime-lane.ts';
import type { WorkMeter } from '../work-window.ts';
import { runChunk, type ChunkResult, type ChunkRunnerDeps } from './chunk-runner.ts';
import { afterSegment, plannedRange, resumeJob, segmentTotals } from './segments.ts';

export interface BulkLaneDeps {
  prefix: string;
  pool: string;
  workerId: string;
  /** pool.lanes.bulk: chunks at once (must be ≥ 1), micro-batching, BullMQ lock and stalled check. */
  settings: PoolConfig['lanes']['bulk'];
  connection: RedisClient;
  backend: ModelBackend;
  storage: ChunkRunnerDeps['storage'];
  store: Pick<BatchStore, 'runnable' | 'settleChunk' | 'chunkSegments' | 'recordSegment' | 'settleLastPart'>;
  /**
   * The connection that subscribes to preemption requests; by default the
   * lane makes its own (a duplicate of `connection`) and closes it with the lane.
   */
  subscriber?: RedisClient;
  metrics: WorkerMetrics;
  /** Told what the chunks do, for the heartbeat's `work` (chunk-runner.ts); none in some tests. */
  work?: WorkMeter;
  logger: Logger;
}

export type BulkJobResult = ChunkResult | { status: 'skipped' | 'superseded' };

/** Most often a running chunk reports its progress to Redis. */
const PROGRESS_EVERY_MS = 1000;

/** Storage errors that no retry can fix: the chunk fails for good. */
const finalStorageCodes: ReadonlySet<StorageErrorCode> = new Set([
  'not_found',
  'permission_denied',
  'invalid_uri',
  'precondition_failed',
  'internal',
]);

/** `<code>: <message>`, the reason recorded for a chunk that failed. */
export function failureReason(err: unknown): string {
  const code = isStorageError(err) || err instanceof FleetError ? err.code : 'internal';
  return `${code}: ${err instanceof Error ? err.message : String(err)}`;
}

export type FailureDecision =
  | { kind: 'unrecoverable'; reason: string }
  /** `settle`: the chunk fails for good now (last attempt), so settle it before BullMQ fails the job. */
  | { kind: 'retry'; reason: string; settle: boolean };

/** What to do with an error from a chunk run, given the attempt it was (attemptsMade counts earlier ones). */
export function decideFailure(err: unknown, attemptsMade: number, attempts: number): FailureDecision {
  const reason = failureReason(err);
  if (isStorageError(err) && finalStorageCodes.has(err.code)) return { kind: 'unrecoverable', reason };
  return { kind: 'retry', reason, settle: attemptsMade + 1 >= attempts };
}

/** The first problem of an invalid chunk job, naming its field: `chunk.lines: …`. */
export function invalidJobReason(error: ZodError): string {
  const issue = error.issues[0];
  const field = issue?.path.length ? issue.path.map(String).join('.') : '(job data)';
  return `bad_request: invalid chunk job: ${field}: ${issue?.message ?? 'invalid'}`;
}

/** The chunk an invalid job meant, when its batch id and index are still readable. */
export function chunkRef(data: unknown): { batchId: string; index: number } | undefined {
  const d = data as { batchId?: unknown; chunk?: { index?: unknown } } | null | undefined;
  const batchId = d?.batchId;
  const index = d?.chunk?.index;
  if (typeof batchId !== 'string' || batchId === '') return undefined;
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) return undefined;
  return { batchId, index };
}

/** Why a chunk's signal fired: preemption (the scheduler asked) wins over draining. */
class Preempted extends FleetError {
  constructor(reason: string) {
    super('unavailable', `preempted: ${reason}`);
  }
}

/** A chunk running on this lane, for preemption: newest first is the order it yields in. */
interface Running {
  seq: number;
  preempt: AbortController;
}

export function startBulkLane(deps: BulkLaneDeps): Lane {
  const { pool, backend, storage, store, metrics, settings } = deps;
  if (settings.concurrency < 1) throw new RangeError('a bulk lane needs concurrency ≥ 1 (0: do not start it)');
  const queue = queueName('bulk', pool);
  const log = deps.logger.child({ lane: 'bulk', queue });
  /** Fires when the grace period is over: every chunk, running or about to start, yields. */
  const stop = new AbortController();
  let running = 0;
  let seq = 0;
  const chunks = new Set<Running>();

  const count = (outcome: string, startedAt: number): void => {
    metrics.bulkChunks.inc({ pool, outcome });
    metrics.bulkChunkSeconds.observe({ pool, outcome }, (Date.now() - startedAt) / 1000);
  };

  const settle = async (batchId: string, index: number, outcome: ChunkOutcome, jobLog: Logger): Promise<void> => {
    const r = await store.settleChunk(batchId, index, outcome);
    if (r === 'gone') jobLog.warn({ outcome: outcome.outcome }, 'batch state is gone; chunk not settled');
  };

  /** Back to the queue without spending an attempt; DelayedError tells BullMQ the job has moved. */
  const requeue = async (job: Job, token: string | undefined, delayMs: number): Promise<never> => {
    await job.moveToDelayed(Date.now() + delayMs, token);
    throw new DelayedError();
  };

  /** A yielded run: record its segment, if any, then hand the chunk back (see the module comment). */
  const yielded = async (
    job: Job,
    token: string | undefined,
    ran: ChunkJob,
    result: ChunkResult,
    preempted: boolean,
    startedAt: number,
    jobLog: Logger,
  ): Promise<BulkJobResult> => {
    const { batchId, chunk } = ran;
    if (result.segmentError !== undefined) {
      jobLog.warn({ err: result.segmentError }, 'could not write the finished lines; they run again');
    }
    if (result.segment) {
      const r = await store.recordSegment(batchId, chunk.index, plannedRange(ran).start, result.segment);
      if (r === 'settled') {
        count('superseded', startedAt);
        return { status: 'superseded' };
      }
      if (r === 'gone') {
        jobLog.warn('batch state is gone or final; segment not recorded');
        count('skipped', startedAt);
        return { status: 'skipped' };
      }
      if (r === 'conflict') {
        count('conflict', startedAt);
        jobLog.warn({ segment: result.segment }, 'another run of this chunk recorded progress first; resuming from it');
        return requeue(job, token, 0);
      }
      // Recorded: the job data follows (a crash before this line is covered by the record).
      await job.updateData(afterSegment(ran, result.segment));
    }
    count(preempted ? 'preempted' : 'yielded', startedAt);
    jobLog.info(
      { segment: result.segment, preempted },
      preempted ? 'chunk preempted; the rest runs later' : 'chunk yielded (draining)',
    );
    return requeue(job, token, preempted ? settings.preemptDelayMs : 0);
  };

  // Three parameters: BullMQ passes an AbortSignal only to a processor that declares it.
  const processor = async (job: Job, token: string | undefined, signal?: AbortSignal): Promise<BulkJobResult> => {
    const startedAt = Date.now();
    const parsed = chunkJobSchema.safeParse(job.data);
    if (!parsed.success) {
      const reason = invalidJobReason(parsed.error);
      const ref = chunkRef(job.data);
      const jobLog = log.child({ jobId: job.id, ...ref });
      jobLog.error({ reason }, 'invalid chunk job');
      if (ref) await settle(ref.batchId, ref.index, { outcome: 'failed', reason }, jobLog);
      count('failed', startedAt);
      throw new UnrecoverableError(reason);
    }
    const { batchId, chunk } = parsed.data;
    const jobLog = log.child({ jobId: job.id, batchId, chunk: chunk.index });

    running++;
    metrics.inFlight.inc({ pool, lane: 'bulk' });
    const me: Running = { seq: seq++, preempt: new AbortController() };
    try {
      // Both reads go out at once (one round trip); the record is only used when the batch runs.
      const recording = store.chunkSegments(batchId, chunk.index);
      recording.catch(() => undefined); // awaited below when used; unused on a skip
      if (!(await store.runnable(batchId))) {
        await settle(batchId, chunk.index, { outcome: 'skipped' }, jobLog);
        count('skipped', startedAt);
        return { status: 'skipped' };
      }
      // The batch's record of finished segments counts, not the job data, which may lag it.
      const recorded = await recording;
      const ran = resumeJob(parsed.data, recorded);
      if (recorded.length > (parsed.data.segments ?? []).length) {
        jobLog.info({ segments: recorded.length }, 'resuming from the batch record (the job data lagged it)');
      }
      const planned = plannedRange(ran);

      // From the start: a chunk shorter than the period reports no progress (a Redis script and an
      // event each, which every QueueEvents reader of the queue then wakes up for).
      let progressAt = startedAt;
      const onProgress = (done: number): void => {
        const now = Date.now();
        if (now - progressAt < PROGRESS_EVERY_MS) return;
        progressAt = now;
        // Not awaited: progress is for people watching Bull Board, never a reason to fail.
        job
          .updateProgress({ lines: planned.lines - ran.chunk.lines + done, of: planned.lines })
          .catch((err: unknown) => jobLog.debug({ err }, 'progress update lost'));
      };
      chunks.add(me);
      const signals = [stop.signal, me.preempt.signal, ...(signal ? [signal] : [])];
      const result = await runChunk(ran, {
        storage,
        backend,
        signal: AbortSignal.any(signals),
        batchSize: settings.batchSize,
        concurrency: settings.recordConcurrency,
        onProgress,
        work: deps.work,
      });
      chunks.delete(me);

      if (result.status === 'yielded') {
        const preempted = me.preempt.signal.aborted && !stop.signal.aborted;
        return await yielded(job, token, ran, result, preempted, startedAt, jobLog);
      }
      const settled = await store.settleLastPart(batchId, chunk.index, planned.start, ran.chunk.start, result);
      if (settled === 'conflict') {
        count('conflict', startedAt);
        jobLog.warn('another run of this chunk recorded progress first; resuming from it');
        return await requeue(job, token, 0);
      }
      if (settled === 'gone') jobLog.warn({ outcome: 'done' }, 'batch state is gone; chunk not settled');
      count(result.status, startedAt);
      metrics.bulkLines.inc({ pool, result: 'completed' }, result.completed);
      metrics.bulkLines.inc({ pool, result: 'failed' }, result.failed);
      // The whole chunk's counts: its segments' and its last part's.
      const carried = segmentTotals(ran.segments ?? []);
      const completed = carried.completed + result.completed;
      const failed = carried.failed + result.failed;
      return { ...result, completed, failed, processedLines: completed + failed };
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      const decision = decideFailure(err, job.attemptsMade, job.opts.attempts ?? 1);
      if (decision.kind === 'unrecoverable') {
        jobLog.error({ err, reason: decision.reason }, 'chunk failed for good');
        await settle(batchId, chunk.index, { outcome: 'failed', reason: decision.reason }, jobLog);
        count('failed', startedAt);
        throw new UnrecoverableError(decision.reason);
      }
      if (decision.settle) {
        jobLog.error({ err, attemptsMade: job.attemptsMade }, 'chunk failed on its last attempt');
        // Best effort: if Redis is what failed, the error below still fails the job.
        await settle(batchId, chunk.index, { outcome: 'failed', reason: decision.reason }, jobLog).catch((e: unknown) =>
          jobLog.error({ err: e }, 'could not settle the failed chunk'),
        );
        count('failed', startedAt);
      } else {
        jobLog.warn({ err, attemptsMade: job.attemptsMade }, 'chunk failed; BullMQ retries it');
        count('retried', startedAt);
      }
      throw err;
    } finally {
      chunks.delete(me);
      running--;
      metrics.inFlight.dec({ pool, lane: 'bulk' });
    }
  };

  const worker = new Worker(queue, processor, {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: settings.concurrency,
    name: deps.workerId,
    // A dead worker's chunk goes back to the queue once its lock lapses and a stalled check runs.
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.stalledIntervalMs,
    // An idle lane blocks this long (s) before fetching again. The scheduler's budget (BullMQ global
    // concurrency) gives no wake-up when it rises, so this bounds how late a raised budget is used
    // (BullMQ's default, 5 s, is several balance passes).
    drainDelay: 1,
    // Results stay a while for Bull Board; the batch state is the record that counts.
    removeOnComplete: { count: 10_000, age: 24 * 3600 },
    removeOnFail: { count: 10_000, age: 7 * 24 * 3600 },
  });
  worker.on('error', (err) => log.error({ err }, 'bulk worker error'));

  /** Claims a token per chunk, newest first, and aborts each claimed one (see the module comment). */
  const preempt = async (message: PreemptMessage): Promise<void> => {
    const victims = [...chunks].filter((c) => !c.preempt.signal.aborted).sort((a, b) => b.seq - a.seq);
    let yielding = 0;
    for (const victim of victims.slice(0, message.count)) {
      if (!(await claimPreemption(deps.connection, deps.prefix, pool))) break;
      victim.preempt.abort(new Preempted(message.reason));
      yielding++;
    }
    if (yielding > 0) log.info({ asked: message.count, yielding, reason: message.reason }, 'preempting chunks');
  };
  const channel = preemptKeys(deps.prefix, pool).channel;
  const { connection } = deps;
  const subscriber =
    deps.subscriber ?? (connection instanceof Cluster ? connection.duplicate() : connection.duplicate());
  let preempting = Promise.resolve();
  const onMessage = (ch: string, text: string): void => {
    if (ch !== channel) return;
    let message: PreemptMessage;
    try {
      message = preemptMessageSchema.parse(JSON.parse(text));
    } catch (err) {
      log.warn({ err }, 'ignoring a malformed preemption request');
      return;
    }
    if (message.pool !== pool) return;
    preempting = preempting
      .then(() => preempt(message))
      .catch((err: unknown) => log.warn({ err }, 'preemption request not served'));
  };
  subscriber.on('message', onMessage);
  subscriber.subscribe(channel).catch((err: unknown) => log.error({ err }, 'cannot listen for preemption requests'));

  const unsubscribe = async (): Promise<void> => {
    subscriber.off('message', onMessage);
    if (deps.subscriber) {
      await settleWithin(subscriber.unsubscribe(channel), 1000);
    } else {
      await settleWithin(subscriber.quit(), 1000);
      subscriber.disconnect();
    }
  };

  return {
    name: 'bulk',
    concurrency: settings.concurrency,
    inFlight: () => running,
    // Chunks are not cancelled one by one: a cancelled batch's chunks are skipped when they start.
    cancel: () => undefined,
    async close(graceMs) {
      // worker.close() stops fetching and waits for running chunks; after the grace
      // period they yield at a record boundary (keeping what they finished) and go back to the queue.
      const closing = worker.close();
      const timer = setTimeout(() => stop.abort(new FleetError('unavailable', 'the worker is draining')), graceMs);
      try {
        if (!(await settleWithin(closing, graceMs + 3000))) {
          log.warn('bulk lane did not close cleanly (Redis unreachable?); forcing');
          stop.abort();
          await settleWithin(worker.close(true), 1000);
        }
      } finally {
        clearTimeout(timer);
        await unsubscribe();
      }
    },
  };
}
