/**
 * The leader's batch pass: read the open batches and the bulk queues' depths,
 * decide (batch-decisions.ts), apply. One pass costs a few round trips: the
 * open index, one pipeline of batch hashes, one count per pool with batches to
 * admit, then per decision one Lua call or one addBulk.
 *
 * Admission adds a batch's next chunk jobs, then advances its cursor, fenced
 * by the leader's epoch. Adding first means a crash in between loses nothing:
 * the next pass adds the same jobs again, which BullMQ ignores (deterministic
 * job ids). Jobs added by a stale leader are harmless for the same reason: the
 * newer leader admits those very chunks under the same ids, and the chunk
 * runner and settleChunk are idempotent. A stale advance is refused, and the
 * pass throws StaleLeaderError so the scheduler stands down.
 *
 * Reconciliation, at most every `reconcileEveryMs`: a chunk job that BullMQ
 * failed for good while its chunk is unsettled is settled `failed` here with
 * the job's reason. The bulk lane settles every failure it sees, but not one
 * BullMQ decides outside it: a chunk whose worker dies on every attempt (a line
 * that crashes the process) is failed by the stalled check after
 * `maxStalledCount` stalls, and without this its batch would wait for it
 * forever. It reads what Redis holds (the settled bitmap, the failed set), so
 * a new leader finds what the old one had not settled yet.
 */
import { Job, Queue, type JobsOptions } from 'bullmq';
import { BatchStore, batchFiles, chunkJobFor, type BatchError, type BatchState } from '../common/batch/batch-state.ts';
import { finalizeJob, planJob } from '../common/batch/control-jobs.ts';
import { controlJobId } from '../common/contracts/batch.ts';
import { readPlanEntries, readPlanPieces, type PlanEntry } from '../common/batch/plan-file.ts';
import type { Logger } from '../common/logger.ts';
import type { RedisClient } from '../common/redis.ts';
import type { Storage } from '../common/storage/index.ts';
import { batchControlQueue, chunkJobId, EXPLAIN_TTL_MS, explainKey, queueName } from '../common/topology.ts';
import { admissionExplanations } from './admission-explain.ts';
import {
  decideBatches,
  failedChunkReason,
  poolsToCount,
  readableChunks,
  type BatchDecision,
  type BatchPolicy,
  type ShareState,
  windowFor,
} from './batch-decisions.ts';
import { StaleLeaderError } from './fenced-writes.ts';

/** Chunk jobs: retried with backoff by BullMQ; kept a while after they end for the board. */
const chunkJobOpts: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 3600, count: 1000 },
  removeOnFail: { age: 7 * 86_400 },
};

/** Job states that occupy a pool's window: everything not yet finished (a paused queue's jobs count as waiting). */
const windowStates = ['waiting', 'prioritized', 'delayed', 'active'] as const;

export interface BatchLoopDeps {
  redis: RedisClient;
  prefix: string;
  storage: Pick<Storage, 'read'>;
  policy: BatchPolicy;
  logger: Logger;
  now: () => number;
  /** Each pool's current bulk budget, when the balance pass has one (it sizes the pool's window). */
  budgets?: () => ReadonlyMap<string, number>;
  /** How often admitted, unsettled chunks are checked against the bulk queues' failed sets (default 5000 ms). */
  reconcileEveryMs?: number;
}

export class BatchLoop {
  private readonly store: BatchStore;
  private readonly bulkQueues = new Map<string, Queue>();
  private controlQueue: Queue | undefined;
  /**
   * The admission share's state per pool (DRR credit), from one pass to the next, and the epoch it
   * belongs to. In memory only: a new leader (failover, or this replica leading again) starts from
   * zero credit, which forgives boost debts and restarts the rotation. Fairness then holds from that
   * pass on, off by at most one quantum plus the debt limit per tenant per failover: rare next to the
   * passes (every 500 ms by default), and cheaper than a fenced Redis write on every pass.
   */
  private share: { epoch: number; pools: ReadonlyMap<string, ShareState> } = { epoch: 0, pools: new Map() };
  /** When failed chunk jobs were last reconciled (0: never, so a new leader checks on its first pass). */
  private reconciledAt = 0;

  constructor(private readonly deps: BatchLoopDeps) {
    this.store = new BatchStore(deps.redis, deps.prefix);
  }

  /** One pass as leader of `epoch`. Throws StaleLeaderError when a newer leader has written. */
  async pass(epoch: number): Promise<BatchDecision[]> {
    const { logger } = this.deps;
    const batches = await this.openBatches();
    if (batches.length === 0) return [];
    const queued = new Map<string, number>();
    for (const pool of poolsToCount(batches)) {
      try {
        const counts = await this.bulkQueue(pool).getJobCounts(...windowStates);
        const inWindow = Object.values(counts).reduce((a, b) => a + b, 0);
        queued.set(pool, inWindow);
      } catch (err) {
        logger.warn({ err, pool }, 'could not count bulk jobs; admitting nothing to this pool this pass');
      }
    }
    const now = this.deps.now();
    const carried = this.share.epoch === epoch ? this.share.pools : undefined;
    const windows = new Map([...(this.deps.budgets?.() ?? [])].map(([pool, budget]) => [pool, windowFor(budget)]));
    const { decisions, share } = decideBatches({ batches, queued, share: carried, windows }, this.deps.policy, now);
    this.share = { epoch, pools: share };
    const byId = new Map(batches.map((b) => [b.spec.id, b]));
    for (const d of decisions) {
      try {
        await this.apply(d, byId.get(d.batchId)!, epoch, now);
      } catch (err) {
        if (err instanceof StaleLeaderError) throw err;
        logger.warn({ err, batchId: d.batchId, decision: d.kind }, 'batch decision failed; retried next pass');
      }
    }
    await this.explain(batches, decisions, queued, windows, epoch, now);
    if (now - this.reconciledAt >= (this.deps.reconcileEveryMs ?? 5000)) {
      this.reconciledAt = now;
      for (const b of batches) {
        await this.settleFailedChunks(b, log(logger, b)).catch((err: unknown) =>
          logger.warn({ err, batchId: b.spec.id }, 'could not reconcile failed chunk jobs; retried later'),
        );
      }
    }
    return decisions;
  }

  /**
   * Settles `failed` every admitted, unsettled chunk of `batch` whose job is in the bulk queue's
   * failed set (one GET of the settled bitmap, one pipeline of ZSCOREs). The next pass then sees
   * the batch drained and finalises it; finalisation writes the chunk's lines to the error file as
   * chunk_failed with this reason.
   */
  private async settleFailedChunks(batch: BatchState, log: Logger): Promise<void> {
    const { spec, counters, status } = batch;
    if (status === 'validating' || counters.settled >= counters.admitted) return;
    const unsettled = await this.store.unsettledChunks(spec.id, counters.cursor);
    if (unsettled.length === 0) return;
    const queue = this.bulkQueue(spec.model);
    const pipe = this.deps.redis.pipeline();
    for (const index of unsettled) pipe.zscore(queue.keys.failed!, chunkJobId(spec.id, index));
    const scores = (await pipe.exec()) ?? [];
    for (const [i, index] of unsettled.entries()) {
      const [err, score] = scores[i] ?? [null, null];
      if (err || score === null) continue;
      const job = await Job.fromId(queue, chunkJobId(spec.id, index));
      const reason = failedChunkReason(job?.failedReason);
      const r = await this.store.settleChunk(spec.id, index, { outcome: 'failed', reason });
      log.warn(
        { chunk: index, reason, attemptsMade: job?.attemptsMade, stalls: job?.stalledCounter, settled: r },
        'chunk job failed unsettled (BullMQ failed it outside the bulk lane); settled failed',
      );
    }
  }

  /** Writes what the pass decided per pool, for `interfleet scheduler explain`; best effort. */
  private async explain(
    batches: readonly BatchState[],
    decisions: readonly BatchDecision[],
    queued: ReadonlyMap<string, number>,
    windows: ReadonlyMap<string, number>,
    epoch: number,
    now: number,
  ): Promise<void> {
    const windowOf = (pool: string): number => windows.get(pool) ?? this.deps.policy.windowPerPool;
    const records = admissionExplanations(batches, decisions, queued, windowOf, epoch, now);
    const pipe = this.deps.redis.pipeline();
    for (const r of records)
      pipe.set(explainKey(this.deps.prefix, 'admission', r.pool), JSON.stringify(r), 'PX', EXPLAIN_TTL_MS);
    await pipe.exec().catch((err: unknown) => this.deps.logger.debug({ err }, 'admission explanation not written'));
  }

  /** Closes the queues (after the last pass). */
  async close(): Promise<void> {
    const queues = [...this.bulkQueues.values(), ...(this.controlQueue ? [this.controlQueue] : [])];
    this.bulkQueues.clear();
    this.controlQueue = undefined;
    await Promise.all(queues.map((q) => q.close()));
  }

  /** The control queue (finalize jobs here; cron job schedulers in cron-schedules.ts). */
  control(): Queue {
    return (this.controlQueue ??= new Queue(batchControlQueue, {
      connection: this.deps.redis,
      prefix: this.deps.prefix,
    }));
  }

  private bulkQueue(pool: string): Queue {
    let queue = this.bulkQueues.get(pool);
    if (!queue) {
      queue = new Queue(queueName('bulk', pool), { connection: this.deps.redis, prefix: this.deps.prefix });
      this.bulkQueues.set(pool, queue);
    }
    return queue;
  }

  /** The open batches; ids whose hash is gone are dropped from the open index. */
  private async openBatches(): Promise<BatchState[]> {
    const ids = await this.store.openIds();
    // One undecodable hash must not stall every batch: it is logged and left out (and left open).
    const undecodable = new Set<string>();
    const batches = await this.store.getMany(ids, (batchId, err) => {
      undecodable.add(batchId);
      this.deps.logger.error({ err, batchId }, 'batch state does not decode; skipped');
    });
    if (batches.length + undecodable.size < ids.length) {
      const found = new Set(batches.map((b) => b.spec.id));
      for (const id of ids.filter((i) => !found.has(i) && !undecodable.has(i))) {
        this.deps.logger.warn({ batchId: id }, 'open batch has no state; removed from the open index');
        await this.store.close(id);
      }
    }
    return batches;
  }

  private async apply(d: BatchDecision, batch: BatchState, epoch: number, now: number): Promise<void> {
    const log = this.deps.logger.child({ batchId: d.batchId });
    switch (d.kind) {
      case 'hold':
        log.debug({ reason: d.reason }, 'batch held');
        // Planning goes on past validating (chunks are admitted while it runs): it needs a live plan job.
        if (d.reason === 'planning' && batch.status !== 'validating') await this.reconcilePlanJob(d.batchId, now, log);
        return;
      case 'close':
        await this.store.close(d.batchId);
        log.info({ status: batch.status }, 'closed a finished batch left in the open index');
        return;
      case 'expire': {
        // Not fenced: expiry is a fact of the clock, whoever notices it; the CAS keeps it to one move.
        const r = await this.store.transition(d.batchId, [d.from], 'finalizing', {
          stop: 'expired',
          finalizing_at: now,
        });
        if (r.moved) log.info({ from: d.from }, 'batch expired; finalizing what settled');
        else log.info({ expected: d.from, found: r.status }, 'batch moved before it could expire; next pass decides');
        return;
      }
      case 'finalize': {
        if (d.transition) {
          const r = await this.store.transition(d.batchId, ['in_progress'], 'finalizing', { finalizing_at: now });
          if (!r.moved) {
            log.info({ found: r.status }, 'batch moved before finalizing; next pass decides');
            return;
          }
        }
        // Re-added on every pass that sees the batch drained: BullMQ ignores an add whose job id exists.
        const { name, data, opts } = finalizeJob(d.batchId);
        await this.control().add(name, data, opts);
        log.debug({ reason: d.reason }, 'finalize job added (or already there)');
        return;
      }
      case 'plan':
        await this.reconcilePlanJob(d.batchId, now, log);
        return;
      case 'admit':
        await this.admit(d, batch, epoch, log);
        return;
      case 'withdraw':
        await this.withdraw(d, log);
        return;
    }
  }

  /**
   * A batch whose planning has not ended needs its plan job. One that is gone
   * (the producer died before queuing it, or it was removed by hand) is added
   * again; re-planning is idempotent (create-only pieces of the same bytes).
   * One that failed for good while the batch still waits for its plan can only
   * have died without failing the batch (its process killed mid-plan until
   * BullMQ's stall limit), and would hold the batch forever: the batch fails,
   * with the job's reason.
   */
  private async reconcilePlanJob(batchId: string, now: number, log: Logger): Promise<void> {
    // One round trip on the usual path (the job is there and alive); the pass runs on every chunk end.
    const jobId = controlJobId.plan(batchId);
    const state = await this.control().getJobState(jobId);
    if (state === 'unknown') {
      const { name, data, opts } = planJob(batchId);
      await this.control().add(name, data, opts);
      log.info('plan job missing; added again');
      return;
    }
    if (state !== 'failed') return;
    const job = await Job.fromId(this.control(), jobId);
    const error: BatchError = {
      code: 'planning_failed',
      message: `planning did not finish: ${job?.failedReason || 'the plan job failed'}`,
      line: null,
      param: null,
    };
    const { moved } = await this.store.failPlanning(batchId, { failed_at: now, errors: JSON.stringify([error]) });
    log.warn({ moved, reason: job?.failedReason }, 'plan job failed for good; batch failed');
  }

  /**
   * Takes back a stopped batch's queued chunks and settles them skipped, so
   * cancel and expiry end without a worker ever picking them up. A chunk a
   * worker holds cannot be removed (BullMQ refuses locked jobs): its run sees
   * the stop and settles it. A job that is gone altogether (removed earlier,
   * by a pass that died before settling, or by hand) is settled too.
   */
  private async withdraw(d: Extract<BatchDecision, { kind: 'withdraw' }>, log: Logger): Promise<void> {
    const queue = this.bulkQueue(d.pool);
    let withdrawn = 0;
    for (const index of await this.store.unsettledChunks(d.batchId, d.below)) {
      const jobId = chunkJobId(d.batchId, index);
      const removed = (await queue.remove(jobId)) === 1 || (await queue.getJobState(jobId)) === 'unknown';
      if (!removed) continue;
      if ((await this.store.settleChunk(d.batchId, index, { outcome: 'skipped' })) === 'settled') withdrawn++;
    }
    if (withdrawn > 0) log.info({ withdrawn }, 'withdrew queued chunks of a stopped batch');
  }

  private async admit(
    d: Extract<BatchDecision, { kind: 'admit' }>,
    batch: BatchState,
    epoch: number,
    log: Logger,
  ): Promise<void> {
    const { spec } = batch;
    const files = batchFiles(spec.outputPrefix);
    // A plan still being cut, or cut by this version, is read from its pieces; an older one from its object.
    const pieces = !batch.planned || batch.plan?.pieces === true;
    const planUri = pieces ? files.planPieces : (batch.plan?.planUri ?? files.plan);
    let entries: PlanEntry[];
    try {
      entries = pieces
        ? await collect(
            readPlanPieces(this.deps.storage, planUri, d.cursor, {
              planByte: batch.counters.plan_byte,
              published: readableChunks(batch),
              limit: d.count,
            }),
          )
        : await this.readEntries(planUri, d.cursor, batch.counters.plan_byte, d.count);
    } catch (err) {
      log.warn({ err, planUri, cursor: d.cursor }, 'could not read the plan; admission skipped this pass');
      return;
    }
    if (entries.length < d.count) {
      log.error(
        { planUri, cursor: d.cursor, wanted: d.count, found: entries.length, readable: readableChunks(batch) },
        'plan holds fewer chunks than the batch counts; admission skipped',
      );
      return;
    }
    const jobs = entries.map(({ chunk }) => ({
      name: 'chunk',
      data: chunkJobFor(spec, chunk),
      opts: { ...chunkJobOpts, jobId: chunkJobId(spec.id, chunk.index) },
    }));
    await this.bulkQueue(d.pool).addBulk(jobs);
    const to = d.cursor + entries.length;
    const r = await this.store.advanceCursor(spec.id, epoch, d.cursor, to, entries.at(-1)!.nextByte);
    if (r === 'stale') throw new StaleLeaderError(epoch);
    if (r === 'conflict') {
      // The batch stopped (cancel, expiry) or the cursor moved meanwhile. Jobs past a stopped batch's
      // cursor were never admitted, so no withdraw pass will look for them: take them back now. (A moved
      // cursor means another pass admitted them: they stay.)
      const now = await this.store.get(spec.id);
      if (now?.stop) {
        for (const { chunk } of entries.filter((e) => e.chunk.index >= now.counters.cursor)) {
          await this.bulkQueue(d.pool).remove(chunkJobId(spec.id, chunk.index));
        }
      }
      log.info({ from: d.cursor, to, stop: now?.stop }, 'cursor moved or batch stopped during admission');
      return;
    }
    log.info(
      { pool: d.pool, from: d.cursor, to, chunks: readableChunks(batch), planned: batch.planned },
      'admitted chunks',
    );
  }

  /** `count` plan entries from chunk `cursor`, reading from its recorded byte offset when there is one. */
  private async readEntries(planUri: string, cursor: number, planByte: number, count: number): Promise<PlanEntry[]> {
    // plan_byte 0 past chunk 0 means no offset was recorded: read from the start and skip.
    const startByte = cursor === 0 || planByte > 0 ? planByte : undefined;
    const out: PlanEntry[] = [];
    for await (const entry of readPlanEntries(this.deps.storage, planUri, cursor, { startByte })) {
      out.push(entry);
      if (out.length === count) break;
    }
    return out;
  }
}

const log = (logger: Logger, b: BatchState): Logger => logger.child({ batchId: b.spec.id });

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
