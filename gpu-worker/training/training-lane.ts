/**
 * The training lane: a BullMQ Worker on `train.<pool>` that runs gang ranks,
 * `concurrency` at once (pools[].lanes.training.concurrency: the slots the
 * scheduler admits gangs into). Each job is one rank of one round of a
 * training job; the lane runs its command (run-command.ts) and settles the
 * rank once in the gang's state (TrainingStore).
 *
 * How a rank job ends:
 * - the gang is not running this round (failed, cancelled, or the job is a
 *   late duplicate): nothing runs; the job completes `skipped`. A rank that
 *   already ended in this round completes `superseded`.
 * - exit 0 (and not stopped, below): settled succeeded with its last
 *   metrics; the job completes.
 * - a non-zero exit or a signal: on the job's last attempt (or when the
 *   command could not even start) settled failed, which fails the gang, and
 *   the job fails unrecoverably with the reason (exit code and stderr's
 *   end); before that, BullMQ retries it with backoff.
 * - stopped because its gang ended (the scheduler's message on the cancel
 *   channel): the command is killed, nothing is settled; the job completes
 *   `stopped`.
 * - stopped by a drain (SIGTERM): the command is killed before the grace
 *   period ends and the job goes back to the queue without spending an
 *   attempt, for another worker to run.
 * Metric lines (JSON objects with a `metric`) become the job's log lines and
 * its progress (the last value of each metric), written at most every
 * PROGRESS_EVERY_MS.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { RANK_JOB_NAME, rankJobSchema, type MetricLine, type RankJob } from '../../common/contracts/training.ts';
import type { Logger } from '../../common/logger.ts';
import { settleWithin } from '../../common/process.ts';
import type { RedisClient } from '../../common/redis.ts';
import { queueName } from '../../common/topology.ts';
import type { TrainingStore } from '../../common/training/training-state.ts';
import type { Lane } from '../realtime-lane.ts';
import { failureReason, rankEnv, runCommand, type RunResult } from './run-command.ts';

export interface TrainingLaneDeps {
  prefix: string;
  pool: string;
  workerId: string;
  /** Ranks at once (≥ 1). */
  concurrency: number;
  connection: RedisClient;
  store: Pick<TrainingStore, 'startRank' | 'settleRank'>;
  logger: Logger;
  /** After SIGTERM, how long a command has before SIGKILL (default 2 s). */
  killAfterMs?: number;
  /** The environment commands inherit from (filtered by rankEnv); process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** The heartbeat's view of a lane, under the training lane's own name. */
export type TrainingLane = Omit<Lane, 'name'> & { readonly name: 'training' };

export type RankJobResult =
  | { status: 'succeeded'; metrics: Record<string, number>; checkpointUri: string }
  | { status: 'skipped' | 'superseded' | 'stopped' };

/** Most often a running rank writes its progress and log lines to Redis. */
const PROGRESS_EVERY_MS = 500;
/** Log lines one flush writes; more are counted, not written (a command printing thousands a second). */
const LOG_LINES_PER_FLUSH = 50;
/** Metric names a rank's record keeps (the last value of each). */
const MAX_METRICS = 64;

/** Cancel reasons the lane gives BullMQ: a drain puts the rank back, anything else stops it. */
const DRAINING = 'draining';

export function startTrainingLane(deps: TrainingLaneDeps): TrainingLane {
  const { pool, store, workerId } = deps;
  const log = deps.logger.child({ lane: 'training', queue: queueName('train', pool) });
  const killAfterMs = deps.killAfterMs ?? 2000;
  let running = 0;

  /** Metric lines into the job's log and progress, coalesced: one write in flight at a time. */
  const progressWriter = (job: Job, ref: RankJob) => {
    const metrics: Record<string, number> = {};
    let lines: string[] = [];
    let dropped = 0;
    let flushing: Promise<void> | undefined;
    const write = async (): Promise<void> => {
      while (lines.length > 0 || dropped > 0) {
        const batch = lines;
        const skipped = dropped;
        lines = [];
        dropped = 0;
        await Promise.all(batch.map((line) => job.log(line)));
        if (skipped > 0) await job.log(`(${skipped} metric lines not logged)`);
        await job.updateProgress({ round: ref.round, rank: ref.rank, metrics });
      }
    };
    const flush = (): Promise<void> =>
      (flushing ??= write()
        .catch((err: unknown) => log.debug({ err, jobId: job.id }, 'progress not written'))
        .finally(() => (flushing = undefined)));
    const timer = setInterval(() => void flush(), PROGRESS_EVERY_MS);
    return {
      metrics,
      add(metric: MetricLine, line: string): void {
        if (metric.value !== undefined && (metric.metric in metrics || Object.keys(metrics).length < MAX_METRICS)) {
          metrics[metric.metric] = metric.value;
        }
        if (lines.length < LOG_LINES_PER_FLUSH) lines.push(line.trim());
        else dropped++;
      },
      async end(): Promise<void> {
        clearInterval(timer);
        await flush();
        await flush(); // lines that came while the last write was ending
      },
    };
  };

  const processor = async (job: Job, token?: string, signal?: AbortSignal): Promise<RankJobResult> => {
    const parsed = rankJobSchema.safeParse(job.data);
    if (!parsed.success || job.name !== RANK_JOB_NAME) {
      // Not settled here: the scheduler's reconciliation fails the gang from the failed job.
      const issue = parsed.error?.issues[0];
      throw new UnrecoverableError(
        `bad_request: not a rank job: ${issue ? `${issue.path.join('.')}: ${issue.message}` : job.name}`,
      );
    }
    const rank = parsed.data;
    const jobLog = log.child({ jobId: job.id, trainingJob: rank.jobId, round: rank.round, rank: rank.rank });
    const startedAt = Date.now();
    const base = { worker: workerId, startedAt, checkpointUri: rank.checkpointUri };
    const start = await store.startRank(pool, rank.jobId, rank.round, rank.rank, { ...base, state: 'running' });
    if (start !== 'run') {
      jobLog.info({ start }, 'rank not run');
      return { status: start === 'not_running' ? 'skipped' : 'superseded' };
    }

    running++;
    const progress = progressWriter(job, rank);
    let result: RunResult;
    try {
      result = await runCommand({
        command: rank.command,
        args: rank.args,
        env: rankEnv(rank, deps.env ?? process.env),
        signal: signal ?? new AbortController().signal,
        onMetric: (metric, line) => progress.add(metric, line),
        killAfterMs,
      });
    } finally {
      running--;
      await progress.end();
    }
    const endedAt = Date.now();
    const settle = (outcome: 'succeeded' | 'failed', reason: string | null) =>
      store.settleRank(
        pool,
        rank.jobId,
        rank.round,
        rank.rank,
        { ...base, state: outcome, endedAt, exitCode: result.exitCode, reason, metrics: progress.metrics },
        endedAt,
      );

    // Stopped first, whatever the exit status: a command that exits 0 on SIGTERM did not finish its round.
    if (signal?.aborted) {
      if (signal.reason === DRAINING) {
        jobLog.info('rank stopped by the drain; back to the queue');
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      jobLog.info({ reason: signal.reason as unknown }, 'rank stopped: its gang ended');
      return { status: 'stopped' };
    }
    if (result.exitCode === 0) {
      const settled = await settle('succeeded', null);
      jobLog.info({ settled, runMs: endedAt - startedAt }, 'rank succeeded');
      return { status: 'succeeded', metrics: progress.metrics, checkpointUri: rank.checkpointUri };
    }
    const reason = `rank ${rank.rank} of round ${rank.round}: ${failureReason(result)}`;
    if (result.spawnError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
      const settled = await settle('failed', reason);
      jobLog.warn({ settled, reason }, 'rank failed for good');
      throw new UnrecoverableError(reason);
    }
    jobLog.warn({ reason, attempt: job.attemptsMade + 1 }, 'rank failed; BullMQ retries it');
    throw new Error(reason);
  };

  const worker = new Worker(queueName('train', pool), processor, {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
    name: workerId,
  });
  worker.on('error', (err) => log.error({ err }, 'training worker error'));

  return {
    name: 'training',
    concurrency: deps.concurrency,
    inFlight: () => running,
    // The scheduler names rank job ids on the cancel channel when their gang ends.
    cancel: (id) => void worker.cancelJob(id, 'gang_ended'),
    async close(graceMs) {
      // Stop fetching and wait; the commands still running are signalled so that SIGKILL lands by the grace's end.
      const closing = worker.close();
      const timer = setTimeout(() => worker.cancelAllJobs(DRAINING), Math.max(0, graceMs - killAfterMs));
      try {
        if (!(await settleWithin(closing, graceMs + 3000))) {
          log.warn('training lane did not close cleanly (Redis unreachable?); forcing');
          worker.cancelAllJobs(DRAINING);
          await settleWithin(worker.close(true), 1000);
        }
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
