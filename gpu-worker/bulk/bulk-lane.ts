/**
 * The bulk lane: a BullMQ Worker on `bulk.<pool>` that runs batch chunks
 * (runChunk) and settles each one once in the batch's state.
 *
 * How a chunk job ends, and what BullMQ does with it:
 * - done / already_done: settled `done` with its line counts; the job
 *   completes with the ChunkResult (Bull Board shows it).
 * - the batch is no longer in_progress (cancel, expiry): settled `skipped`
 *   without touching storage; the job completes with `{ status: 'skipped' }`.
 * - yielded (the lane is draining): the job goes back to the queue without
 *   spending an attempt (moveToDelayed + DelayedError) and runs again later,
 *   from the chunk's start (the runner wrote nothing).
 * - invalid job data or a storage error no retry can fix: settled `failed`
 *   with the reason, and UnrecoverableError (no retries).
 * - anything else (storage unavailable, Redis, a backend that broke the
 *   whole micro-batch): rethrown, so BullMQ retries with the job's backoff;
 *   on the last attempt the chunk is settled `failed` first, so finalisation
 *   reports its lines as chunk_failed rather than waiting for it forever.
 * Settlement is once-only (BatchStore.settleChunk), so a chunk run twice
 * counts once.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { ZodError } from 'zod';
import type { BatchStore, ChunkOutcome } from '../../common/batch/batch-state.ts';
import type { PoolConfig } from '../../common/config.ts';
import { chunkJobSchema } from '../../common/contracts/batch.ts';
import { FleetError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { settleWithin } from '../../common/process.ts';
import type { RedisClient } from '../../common/redis.ts';
import { isStorageError, type StorageErrorCode } from '../../common/storage/index.ts';
import { queueName } from '../../common/topology.ts';
import type { ModelBackend } from '../backends/backend.ts';
import type { WorkerMetrics } from '../metrics.ts';
import type { Lane } from '../realtime-lane.ts';
import { runChunk, type ChunkResult, type ChunkRunnerDeps } from './chunk-runner.ts';

export interface BulkLaneDeps {
  prefix: string;
  pool: string;
  workerId: string;
  /** pool.lanes.bulk: chunks at once (must be ≥ 1), micro-batching, BullMQ lock and stalled check. */
  settings: PoolConfig['lanes']['bulk'];
  connection: RedisClient;
  backend: ModelBackend;
  storage: ChunkRunnerDeps['storage'];
  store: Pick<BatchStore, 'runnable' | 'settleChunk'>;
  metrics: WorkerMetrics;
  logger: Logger;
}

export type BulkJobResult = ChunkResult | { status: 'skipped' };

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

export function startBulkLane(deps: BulkLaneDeps): Lane {
  const { pool, backend, storage, store, metrics, settings } = deps;
  if (settings.concurrency < 1) throw new RangeError('a bulk lane needs concurrency ≥ 1 (0: do not start it)');
  const queue = queueName('bulk', pool);
  const log = deps.logger.child({ lane: 'bulk', queue });
  /** Fires when the grace period is over: every chunk, running or about to start, yields. */
  const stop = new AbortController();
  let running = 0;

  const count = (outcome: string, startedAt: number): void => {
    metrics.bulkChunks.inc({ pool, outcome });
    metrics.bulkChunkSeconds.observe({ pool, outcome }, (Date.now() - startedAt) / 1000);
  };

  const settle = async (batchId: string, index: number, outcome: ChunkOutcome, jobLog: Logger): Promise<void> => {
    const r = await store.settleChunk(batchId, index, outcome);
    if (r === 'gone') jobLog.warn({ outcome: outcome.outcome }, 'batch state is gone; chunk not settled');
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
    const chunkJob = parsed.data;
    const { batchId, chunk } = chunkJob;
    const jobLog = log.child({ jobId: job.id, batchId, chunk: chunk.index });

    running++;
    metrics.inFlight.inc({ pool, lane: 'bulk' });
    try {
      if (!(await store.runnable(batchId))) {
        await settle(batchId, chunk.index, { outcome: 'skipped' }, jobLog);
        count('skipped', startedAt);
        return { status: 'skipped' };
      }

      let progressAt = 0;
      const onProgress = (done: number): void => {
        const now = Date.now();
        if (now - progressAt < PROGRESS_EVERY_MS) return;
        progressAt = now;
        // Not awaited: progress is for people watching Bull Board, never a reason to fail.
        job
          .updateProgress({ lines: done, of: chunk.lines })
          .catch((err: unknown) => jobLog.debug({ err }, 'progress update lost'));
      };
      const result = await runChunk(chunkJob, {
        storage,
        backend,
        signal: signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
        batchSize: settings.batchSize,
        concurrency: settings.recordConcurrency,
        onProgress,
      });

      if (result.status === 'yielded') {
        // Back to the queue at once, attempts untouched; DelayedError tells BullMQ it has moved.
        await job.moveToDelayed(Date.now(), token);
        count('yielded', startedAt);
        jobLog.info({ processedLines: result.processedLines }, 'chunk yielded (draining)');
        throw new DelayedError();
      }
      await settle(
        batchId,
        chunk.index,
        { outcome: 'done', completed: result.completed, failed: result.failed },
        jobLog,
      );
      count(result.status, startedAt);
      metrics.bulkLines.inc({ pool, result: 'completed' }, result.completed);
      metrics.bulkLines.inc({ pool, result: 'failed' }, result.failed);
      return result;
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
    // Results stay a while for Bull Board; the batch state is the record that counts.
    removeOnComplete: { count: 10_000, age: 24 * 3600 },
    removeOnFail: { count: 10_000, age: 7 * 24 * 3600 },
  });
  worker.on('error', (err) => log.error({ err }, 'bulk worker error'));

  return {
    name: 'bulk',
    concurrency: settings.concurrency,
    inFlight: () => running,
    // Chunks are not cancelled one by one: a cancelled batch's chunks are skipped when they start.
    cancel: () => undefined,
    async close(graceMs) {
      // worker.close() stops fetching and waits for running chunks; after the grace
      // period they yield at a record boundary and go back to the queue.
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
      }
    },
  };
}
