/**
 * The leader's autoscaling pass, every `autoscaler.everyMs`, for each pool
 * with a policy: read what the pool holds and does, decide
 * (common/autoscale/decide.ts), hand the decision to the actuator, explain
 * and meter it.
 *
 * Reads per pool (one round trip each, issued together): the heartbeats
 * (HGETALL), the counts of `rt.`, `bulk.` and `train.<pool>` in every state
 * that holds work, the delayed jobs already due of each (ZCOUNT on the
 * delayed set up to now: BullMQ scores them timestamp·0x1000 + a counter),
 * the oldest waiting real-time job, and the actuator's count. Once per pass
 * for every pool: the open batches (their records left and deadlines). The
 * training part comes from the training pass just before (TrainingLoop
 * .gangDemand), which reads the gangs anyway.
 *
 * Any read that fails makes the pool's signals missing: decide() holds (a
 * Redis outage never scales a pool toward zero) and the explain record says
 * why. Decisions are not fenced, like the bulk budget: a replica count is not
 * a record that could be lost or doubled, and a newer leader's first pass
 * (with a fresh state that respects the stabilization windows) overrides a
 * stale one's last.
 */
import { Queue } from 'bullmq';
import { decide, missingSignals } from '../../common/autoscale/decide.ts';
import { poolSnapshot, queueCounts } from '../../common/autoscale/pool-snapshot.ts';
import type { ResolvedPolicy } from '../../common/autoscale/policy.ts';
import type { AutoscaleDecision, AutoscaleState, OpenBatch, PoolSnapshot } from '../../common/autoscale/types.ts';
import { BatchStore, isTerminal, type BatchState } from '../../common/batch/batch-state.ts';
import type { AutoscaleExplanation } from '../../common/contracts/explain.ts';
import { liveWorkers, type Heartbeat } from '../../common/contracts/heartbeat.ts';
import type { Logger } from '../../common/logger.ts';
import type { RedisClient } from '../../common/redis.ts';
import { EXPLAIN_TTL_MS, explainKey, queueName, workersKey } from '../../common/topology.ts';
import type { SchedulerMetrics } from '../metrics.ts';
import type { GangDemand } from '../training-loop.ts';
import type { Actuator } from './actuators/actuator.ts';
import type { PoolPolicy } from './policy-source.ts';

/** Decisions that changed something, kept per pool for explain. */
const HISTORY = 20;
/** Busy slots a training rank counts for when choosing whom to remove (as the pod deletion cost does). */
const RANK_WEIGHT = 1000;

export interface AutoscaleLoopDeps {
  redis: RedisClient;
  prefix: string;
  /** The pools with a policy, as in force now (re-read on config changes). */
  policies: () => readonly PoolPolicy[];
  actuator: Actuator;
  /** The quantile the real-time objective is on (scheduler.balance.quantile). */
  quantile: number;
  /** Records per chunk (batch.chunkLines): estimates what a batch still being planned holds. */
  chunkLines: number;
  training: (pool: string) => GangDemand | undefined;
  metrics: SchedulerMetrics;
  logger: Logger;
  now: () => number;
}

/** What the KEDA external scaler serves for a pool. */
export interface PoolDemand {
  desired: number;
  /** The pool has work, or a policy that keeps replicas (minReplicas, floor, running ranks). */
  active: boolean;
}

type Queues = Record<'rt' | 'bulk' | 'train', Queue>;

export class AutoscaleLoop {
  private readonly states = new Map<string, AutoscaleState>();
  private readonly latest = new Map<string, PoolDemand>();
  private readonly history = new Map<string, AutoscaleExplanation['history']>();
  private readonly queues = new Map<string, Queues>();
  private readonly batchStore: BatchStore;

  constructor(private readonly deps: AutoscaleLoopDeps) {
    this.batchStore = new BatchStore(deps.redis, deps.prefix);
  }

  /** One pass as leader of `epoch` over every pool with a policy. */
  async pass(epoch: number): Promise<AutoscaleDecision[]> {
    const pools = this.deps.policies();
    if (pools.length === 0) return [];
    const batches = await this.openBatches().catch((err: unknown) => err as Error);
    const out: AutoscaleDecision[] = [];
    for (const { pool, policy } of pools) {
      try {
        out.push(await this.poolPass(pool.name, policy, batches, epoch));
      } catch (err) {
        this.deps.logger.warn({ err, pool: pool.name }, 'autoscaling pass failed for a pool; retried next pass');
      }
    }
    return out;
  }

  /** The last decision for a pool this term (the external scaler's answer); undefined before the first. */
  demand(pool: string): PoolDemand | undefined {
    return this.latest.get(pool);
  }

  /** Forgets decide()'s memory (on losing leadership: the next term starts from the pool's size). */
  reset(): void {
    this.states.clear();
    this.latest.clear();
  }

  async close(): Promise<void> {
    const queues = [...this.queues.values()].flatMap((q) => Object.values(q));
    this.queues.clear();
    await Promise.all(queues.map((q) => q.close()));
    await this.deps.actuator.close();
  }

  private async poolPass(
    pool: string,
    policy: ResolvedPolicy,
    batches: Map<string, OpenBatch[]> | Error,
    epoch: number,
  ): Promise<AutoscaleDecision> {
    const { metrics, logger, now } = this.deps;
    let snapshot: PoolSnapshot | undefined;
    let heartbeats: Heartbeat[] = [];
    let missing: string | undefined;
    try {
      if (batches instanceof Error) throw batches;
      ({ snapshot, heartbeats } = await this.read(pool, batches.get(pool) ?? []));
    } catch (err) {
      missing = `signals could not be read: ${(err as Error).message}`;
    }
    const at = now();
    const prior = this.states.get(pool);
    const { decision, state } = decide(snapshot ?? { pool, missing: missing! }, policy, prior, at);
    // Nothing read and nothing decided yet this term: decide() holds at a made-up 0. Neither keep that
    // (the first complete pass must start from the pool's size, stabilization windows included) nor
    // serve or meter it as a replica count (KEDA would scale the pool toward zero on a Redis outage).
    const known = snapshot !== undefined || prior !== undefined;
    if (known) this.states.set(pool, state);
    if (snapshot && decision.reason === 'hold_missing_signals') missing = missingSignals(snapshot, policy, at);

    let actuatorError: string | undefined;
    if (snapshot && !missing && decision.desired !== snapshot.replicas.desired) {
      try {
        await this.deps.actuator.scale(pool, decision.desired, busySlots(heartbeats));
      } catch (err) {
        actuatorError = (err as Error).message;
        metrics.autoscalerActuatorErrors.inc({ pool });
        logger.warn(
          { err, pool, desired: decision.desired },
          'actuator could not apply the decision; retried next pass',
        );
      }
    }
    const ready = snapshot?.replicas.ready ?? 0;
    if (known) {
      this.latest.set(pool, {
        desired: decision.desired,
        active: decision.desired > 0 || (snapshot !== undefined && decision.recommendation > 0),
      });
    }
    this.remember(pool, decision, at);
    this.meter(pool, decision, ready, known);
    if (decision.desired !== decision.previous) {
      logger.info(
        {
          pool,
          desired: decision.desired,
          previous: decision.previous,
          reason: decision.reason,
          parts: decision.parts,
        },
        'autoscaling decision',
      );
    }
    const served = known ? (this.latest.get(pool) ?? null) : null;
    const record = this.explanation(pool, policy, decision, { epoch, at, ready, missing, actuatorError, served });
    await this.deps.redis
      .set(explainKey(this.deps.prefix, 'autoscale', pool), JSON.stringify(record), 'PX', EXPLAIN_TTL_MS)
      .catch((err: unknown) => logger.debug({ err, pool }, 'autoscale explanation not written'));
    return decision;
  }

  private async read(pool: string, batches: OpenBatch[]): Promise<{ snapshot: PoolSnapshot; heartbeats: Heartbeat[] }> {
    const { redis, prefix, now } = this.deps;
    const q = this.queuesOf(pool);
    const at = now();
    // Due delayed jobs: score ≤ the last score BullMQ can give a job due at `at`.
    const dueMax = (at + 1) * 0x1000 - 1;
    const counts = (queue: Queue) => queue.getJobCounts('wait', 'prioritized', 'delayed', 'active');
    const due = (queue: Queue) => redis.zcount(queue.keys.delayed!, '-inf', dueMax);
    const live = redis.hgetall(workersKey(prefix, pool)).then((raw) => liveWorkers(raw, at));
    const [heartbeats, rt, bulk, train, rtDue, bulkDue, trainDue, oldest, replicas] = await Promise.all([
      live,
      counts(q.rt),
      counts(q.bulk),
      counts(q.train),
      due(q.rt),
      due(q.bulk),
      due(q.train),
      q.rt.getJobs(['wait'], 0, 0, true),
      this.deps.actuator.observe(pool, live),
    ]);
    const gangs = this.deps.training(pool) ?? { slotsHeld: 0, waitingGangs: [] };
    const slotsPerReplica = Math.max(
      0,
      ...heartbeats.map((h) => h.lanes.find((l) => l.name === 'training')?.concurrency ?? 0),
    );
    const snapshot = poolSnapshot({
      pool,
      at,
      replicas,
      heartbeats,
      queues: {
        rt: queueCounts(rt, rtDue),
        bulk: queueCounts(bulk, bulkDue),
        train: queueCounts(train, trainDue),
      },
      oldestQueuedMs: oldest[0] ? Math.max(0, at - oldest[0].timestamp) : 0,
      batches,
      training: { slotsPerReplica, ...gangs },
      quantile: this.deps.quantile,
    });
    return { snapshot, heartbeats };
  }

  /** Open batches by pool: records left (estimated while planning) and the end of their window. */
  private async openBatches(): Promise<Map<string, OpenBatch[]>> {
    const ids = await this.batchStore.openIds();
    const states = await this.batchStore.getMany(ids, () => undefined);
    const byPool = new Map<string, OpenBatch[]>();
    for (const b of states) {
      const left = recordsLeft(b, this.deps.chunkLines);
      if (left <= 0) continue;
      const list = byPool.get(b.spec.model) ?? [];
      list.push({ id: b.spec.id, recordsLeft: left, deadlineAt: b.spec.expiresAt });
      byPool.set(b.spec.model, list);
    }
    return byPool;
  }

  private queuesOf(pool: string): Queues {
    let q = this.queues.get(pool);
    if (!q) {
      const make = (kind: 'rt' | 'bulk' | 'train') =>
        new Queue(queueName(kind, pool), { connection: this.deps.redis, prefix: this.deps.prefix });
      q = { rt: make('rt'), bulk: make('bulk'), train: make('train') };
      this.queues.set(pool, q);
    }
    return q;
  }

  private remember(pool: string, d: AutoscaleDecision, at: number): void {
    if (d.desired === d.previous) return;
    const list = [...(this.history.get(pool) ?? []), entry(d, at)];
    this.history.set(pool, list.slice(-HISTORY));
  }

  private meter(pool: string, d: AutoscaleDecision, ready: number, known: boolean): void {
    const m = this.deps.metrics;
    m.autoscalerDecisions.inc({ pool, reason: d.reason });
    if (!known) return;
    m.autoscalerDesired.set({ pool }, d.desired);
    m.autoscalerReady.set({ pool }, ready);
    m.autoscalerCapacity.set({ pool }, d.capacity.unitsPerSecond);
    for (const part of ['realtime', 'bulk', 'training', 'running', 'floor'] as const) {
      m.autoscalerDemand.set({ pool, part }, d.parts[part]);
    }
  }

  private explanation(
    pool: string,
    policy: ResolvedPolicy,
    d: AutoscaleDecision,
    ctx: {
      epoch: number;
      at: number;
      ready: number;
      missing: string | undefined;
      actuatorError: string | undefined;
      served: PoolDemand | null;
    },
  ): AutoscaleExplanation {
    return {
      pool,
      at: ctx.at,
      epoch: ctx.epoch,
      actuator: this.deps.actuator.kind,
      replicas: { desired: d.desired, ready: ctx.ready, min: policy.minReplicas, max: policy.maxReplicas },
      decision: { ...entry(d, ctx.at), ...(ctx.missing !== undefined && { missing: ctx.missing }) },
      parts: { ...d.parts, costCap: d.parts.costCap ?? null },
      realtime: { ...d.realtime, firstTokenMs: d.realtime.firstTokenMs ?? null },
      capacity: d.capacity,
      bulk: { neededUnitsPerSecond: d.bulk.neededUnitsPerSecond, tightest: d.bulk.tightest ?? null },
      costPerHour: d.costPerHour,
      served: ctx.served,
      ...(ctx.actuatorError !== undefined && { actuatorError: ctx.actuatorError }),
      history: this.history.get(pool) ?? [],
    };
  }
}

const entry = (d: AutoscaleDecision, at: number): AutoscaleExplanation['history'][number] => ({
  at,
  desired: d.desired,
  previous: d.previous,
  recommendation: d.recommendation,
  reason: d.reason,
});

/** Busy slots per live worker (training ranks weigh most): the actuator removes the idlest first. */
export function busySlots(heartbeats: readonly Heartbeat[]): Map<string, number> {
  return new Map(
    heartbeats.map((h) => [
      h.workerId,
      h.lanes.reduce((sum, l) => sum + l.inFlight * (l.name === 'training' ? RANK_WEIGHT : 1), 0),
    ]),
  );
}

/**
 * Records of an open batch not yet done. Planned: its total less what completed or failed. Still
 * planning: the chunks published so far times chunkLines (a lower bound; the rest shows up as it is
 * planned). Stopping (cancelling) or finalizing: nothing left to run.
 */
export function recordsLeft(b: BatchState, chunkLines: number): number {
  if (isTerminal(b.status) || b.status === 'cancelling' || b.status === 'finalizing' || b.stop !== null) return 0;
  const c = b.counters;
  const total = b.planned ? c.total : c.plan_chunks * chunkLines;
  return Math.max(0, total - c.completed - c.failed);
}
