/**
 * The batch control worker: a BullMQ Worker on the control queue, run by every
 * producer replica. Three kinds of job (contracts/batch.ts controlJobSchema):
 * - plan: ./plan-job.ts;
 * - finalize: ./finalizer.ts; on its last attempt a failure ends the batch
 *   `failed`, naming the step and cause, so it is never stuck in finalizing;
 * - cron: a schedule of config.batch.schedules fired; the injected
 *   `launchScheduled` creates its batch for the intended fire time (the same
 *   on a retry, so the service can key its idempotence on it).
 *
 * Jobs are retried by BullMQ per the options they were added with. On drain,
 * jobs still running after the grace period are aborted and put back as
 * delayed, without spending an attempt: both plan and finalize re-run safely.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { BatchStore } from '../../common/batch/batch-state.ts';
import type { BatchSchedule, Config } from '../../common/config.ts';
import { controlJobSchema } from '../../common/contracts/batch.ts';
import type { Logger } from '../../common/logger.ts';
import { settleWithin } from '../../common/process.ts';
import type { RedisClient } from '../../common/redis.ts';
import type { Storage } from '../../common/storage/index.ts';
import { batchControlQueue } from '../../common/topology.ts';
import { failFinalization, finalizeBatch } from './finalizer.ts';
import { runPlanJob } from './plan-job.ts';

export interface BatchControlDeps {
  config: Config;
  /** A 'worker'-flavour connection (createRedis). */
  connection: RedisClient;
  store: BatchStore;
  storage: Storage;
  logger: Logger;
  /** Creates a batch for a cron firing (the batch service's createBatch, injected to avoid a cycle). */
  launchScheduled: (schedule: BatchSchedule, firedAt: Date) => Promise<string>;
  now?: () => number;
  /** How often a batch's status is checked while it is planned (default 1000 ms). */
  statusPollMs?: number;
}

export interface BatchControl {
  /** Stops taking jobs; running ones get `graceMs`, then are aborted and put back. */
  close(graceMs: number): Promise<void>;
}

/** How long an aborted job waits before another replica picks it up. */
const requeueDelayMs = 1000;

/**
 * The instant a job-scheduler job was due: its id is `repeat:<scheduler>:<ms>`
 * (BullMQ 6 job schedulers) and `opts.prevMillis` holds the same instant;
 * a job added by hand falls back to its creation time.
 */
export function fireTime(job: Pick<Job, 'id' | 'opts' | 'timestamp'>): number {
  const fromId = /^repeat:.+:(\d+)$/.exec(job.id ?? '');
  if (fromId) return Number(fromId[1]);
  return job.opts.prevMillis ?? job.timestamp;
}

/** Whether a failure now is the job's last: BullMQ counts finished attempts in attemptsMade. */
export const isLastAttempt = (job: Pick<Job, 'attemptsMade' | 'opts'>): boolean =>
  job.attemptsMade + 1 >= (job.opts.attempts ?? 1);

export function startBatchControl(deps: BatchControlDeps): BatchControl {
  const { config, store, storage } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.logger.child({ role: 'producer', queue: batchControlQueue });

  const processor = async (job: Job, token?: string, signal?: AbortSignal): Promise<unknown> => {
    const parsed = controlJobSchema.safeParse(job.data);
    if (!parsed.success) {
      throw new UnrecoverableError(`bad_request: not a batch control job: ${parsed.error.issues[0]?.message}`);
    }
    const data = parsed.data;
    const jobLog = log.child({ jobId: job.id, kind: data.kind });
    try {
      switch (data.kind) {
        case 'plan': {
          const result = await runPlanJob(
            data.batchId,
            {
              batch: config.batch,
              store,
              storage,
              logger: jobLog,
              now,
              signal,
              statusPollMs: deps.statusPollMs,
              // The scheduler takes a progress event as its cue to admit the new chunks at once.
              onPublished: (published) =>
                void job
                  .updateProgress({ published })
                  .catch((err: unknown) => jobLog.debug({ err }, 'plan progress not reported')),
            },
            { lastAttempt: isLastAttempt(job) },
          );
          // The batch is failed with its reason already; the job fails too, for the board, and is not retried.
          if (result.outcome === 'failed')
            throw new UnrecoverableError(`${result.error.code}: ${result.error.message}`);
          return result;
        }
        case 'finalize':
          return await finalize(data.batchId, job, jobLog, signal);
        case 'cron':
          return await launch(data.schedule, job, jobLog);
      }
    } catch (err) {
      if (signal?.aborted && !(err instanceof UnrecoverableError) && token !== undefined) {
        // Draining: hand the job back without spending an attempt.
        await job.moveToDelayed(now() + requeueDelayMs, token);
        throw new DelayedError();
      }
      throw err;
    }
  };

  async function finalize(batchId: string, job: Job, jobLog: Logger, signal?: AbortSignal) {
    try {
      const result = await finalizeBatch(batchId, { store, storage, logger: jobLog, now, signal });
      // The job's return value, kept for the board: the manifest itself is in storage.
      return result.outcome === 'ended'
        ? { outcome: result.outcome, status: result.status, request_counts: result.manifest.request_counts }
        : result;
    } catch (err) {
      if (signal?.aborted || !isLastAttempt(job)) throw err; // retried (or requeued on drain)
      const failed = await failFinalization(store, batchId, err, now());
      jobLog.error({ err, failed }, 'finalisation failed for good; batch failed');
      throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
    }
  }

  async function launch(name: string, job: Job, jobLog: Logger) {
    const schedule = config.batch.schedules.find((s) => s.name === name);
    if (!schedule) {
      // Removed from config since the scheduler upserted it: nothing to launch.
      jobLog.warn({ schedule: name }, 'cron job for an unknown schedule; dropped');
      return { outcome: 'unknown_schedule' as const };
    }
    const firedAt = new Date(fireTime(job));
    const batchId = await deps.launchScheduled(schedule, firedAt);
    jobLog.info({ schedule: name, firedAt, batchId }, 'scheduled batch launched');
    return { outcome: 'launched' as const, batchId, firedAt: firedAt.toISOString() };
  }

  const worker = new Worker(batchControlQueue, processor, {
    connection: deps.connection,
    prefix: config.redis.prefix,
    concurrency: config.batch.controlConcurrency,
    // Control job ids are one per batch (controlJobId): a kept completed job would swallow a re-add.
    removeOnComplete: { count: 0 },
    removeOnFail: { count: 5000, age: 7 * 24 * 3600 },
  });
  worker.on('error', (err) => log.error({ err }, 'batch control worker error'));
  worker.on('failed', (job, err) => log.warn({ err, jobId: job?.id }, 'batch control job failed'));

  return {
    async close(graceMs) {
      const closing = worker.close();
      const timer = setTimeout(() => worker.cancelAllJobs('draining'), graceMs);
      try {
        if (!(await settleWithin(closing, graceMs + 3000))) {
          log.warn('batch control worker did not close cleanly (Redis unreachable?); forcing');
          await settleWithin(worker.close(true), 1000);
        }
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
