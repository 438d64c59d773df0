/**
 * The leader's priority-balancing pass: per pool, read what real-time traffic
 * looks like (the workers' heartbeat windows, the real-time queue's backlog),
 * decide the bulk budget (bulk-budget.ts), apply it. A pass costs per pool:
 * one HGETALL of the heartbeats, two calls on `rt.<pool>` (counts, oldest
 * waiting job), one HSET on `bulk.<pool>`'s meta, and, rarely, a preemption
 * request.
 *
 * The actuator is BullMQ's global concurrency on `bulk.<pool>`: a cap on
 * active jobs across every worker, checked atomically when a worker fetches
 * (moveToActive), so the budget holds fleet-wide without the workers
 * coordinating. It stops new chunks from starting; chunks already running
 * are asked to yield through the preemption protocol (common/preemption.ts).
 * A raised budget reaches idle workers at their next fetch (bulk lanes block
 * for at most their drainDelay).
 *
 * Not fenced: a stale leader's last write is overwritten by the new leader's
 * first pass, a second later, and a budget is not a record that could be
 * lost or doubled.
 */
import { Queue } from 'bullmq';
import type { Config, PoolConfig } from '../common/config.ts';
import type { BudgetExplanation } from '../common/contracts/explain.ts';
import { liveWorkers, type Heartbeat } from '../common/contracts/heartbeat.ts';
import { mergeCounts } from '../common/latency-window.ts';
import type { Logger } from '../common/logger.ts';
import type { RedisClient } from '../common/redis.ts';
import { EXPLAIN_TTL_MS, explainKey, queueName, workersKey } from '../common/topology.ts';
import {
  decideBudget,
  type BudgetPolicy,
  type BudgetReason,
  type BudgetSignals,
  type BudgetState,
} from './bulk-budget.ts';
import type { SchedulerMetrics } from './metrics.ts';

export interface BudgetLoopDeps {
  redis: RedisClient;
  prefix: string;
  pools: readonly PoolConfig[];
  balance: Config['scheduler']['balance'];
  metrics: SchedulerMetrics;
  logger: Logger;
  now: () => number;
  /** Asks `count` running chunks of the pool to yield (the preemption protocol). */
  preempt: (pool: string, count: number, reason: string) => Promise<void>;
}

export class BudgetLoop {
  private readonly states = new Map<string, BudgetState>();
  private readonly queues = new Map<string, Queue>();

  constructor(private readonly deps: BudgetLoopDeps) {}

  /** One pass over every pool; a pool whose signals cannot be read keeps its budget. */
  async pass(epoch: number): Promise<BudgetExplanation[]> {
    const out: BudgetExplanation[] = [];
    for (const pool of this.deps.pools) {
      try {
        out.push(await this.balance(pool, epoch));
      } catch (err) {
        this.deps.logger.warn({ err, pool: pool.name }, 'bulk budget pass failed; budget kept');
      }
    }
    return out;
  }

  /** Each pool's current budget (its slots when uncapped); pools with no bulk slot counted yet are absent. */
  budgets(): ReadonlyMap<string, number> {
    return new Map([...this.states].map(([pool, s]) => [pool, s.budget]));
  }

  /** Forgets the controller's state (on losing leadership: a later term starts from fresh signals). */
  reset(): void {
    this.states.clear();
  }

  async close(): Promise<void> {
    const queues = [...this.queues.values()];
    this.queues.clear();
    await Promise.all(queues.map((q) => q.close()));
  }

  private queue(kind: 'rt' | 'bulk', pool: string): Queue {
    const name = queueName(kind, pool);
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.deps.redis, prefix: this.deps.prefix });
      this.queues.set(name, q);
    }
    return q;
  }

  private policy(pool: PoolConfig): BudgetPolicy {
    return { ...this.deps.balance, objectiveMs: pool.firstTokenObjectiveMs };
  }

  private async balance(pool: PoolConfig, epoch: number): Promise<BudgetExplanation> {
    const { redis, prefix, metrics, logger } = this.deps;
    const now = this.deps.now();
    const rt = this.queue('rt', pool.name);
    const bulk = this.queue('bulk', pool.name);
    const [raw, rtCounts, [oldest], bulkCounts] = await Promise.all([
      redis.hgetall(workersKey(prefix, pool.name)),
      rt.getJobCounts('waiting', 'prioritized', 'active'),
      rt.getJobs(['waiting'], 0, 0, true),
      bulk.getJobCounts('waiting', 'prioritized', 'active', 'delayed'),
    ]);
    const workers = liveWorkers(raw, now);
    const ready = workers.filter((w) => w.state === 'ready');
    const signals = poolSignals(ready, {
      realtimeWaiting: (rtCounts.waiting ?? 0) + (rtCounts.prioritized ?? 0),
      oldestQueuedMs: oldest ? Math.max(0, now - oldest.timestamp) : 0,
    });
    const policy = this.policy(pool);
    const { decision, state } = decideBudget(this.states.get(pool.name), signals, policy, now);
    if (state) this.states.set(pool.name, state);
    else this.states.delete(pool.name);

    if (uncapped(decision.reason)) await bulk.removeGlobalConcurrency();
    else await bulk.setGlobalConcurrency(decision.budget);
    if (decision.preempt > 0) {
      const reason = `${decision.reason}: p${policy.quantile * 100} first token ${fmt(decision.observed.quantileMs)} ms (${decision.observed.overObjective} of ${decision.observed.samples} over the objective), oldest queued ${decision.observed.oldestQueuedMs} ms, oldest without a first token ${decision.observed.oldestWaitingMs} ms, objective ${policy.objectiveMs} ms`;
      await this.deps.preempt(pool.name, decision.preempt, reason);
      metrics.preemptions.inc({ pool: pool.name }, decision.preempt);
    }
    if (decision.budget !== decision.previous || decision.preempt > 0) {
      logger.info(
        {
          pool: pool.name,
          budget: decision.budget,
          previous: decision.previous,
          reason: decision.reason,
          preempt: decision.preempt,
          observed: decision.observed,
        },
        'bulk budget changed',
      );
    }
    metrics.bulkBudget.set({ pool: pool.name }, decision.budget);
    metrics.bulkSlots.set({ pool: pool.name }, signals.bulkSlots);
    metrics.budgetDecisions.inc({ pool: pool.name, reason: decision.reason });
    if (decision.observed.quantileMs !== undefined)
      metrics.firstTokenQuantile.set({ pool: pool.name }, decision.observed.quantileMs / 1000);

    const explanation: BudgetExplanation = {
      pool: pool.name,
      at: now,
      epoch,
      objectiveMs: policy.objectiveMs,
      quantile: policy.quantile,
      decision,
      workers: { ready: ready.length, draining: workers.length - ready.length },
      realtime: { waiting: signals.realtimeWaiting, active: rtCounts.active ?? 0 },
      bulk: {
        waiting: (bulkCounts.waiting ?? 0) + (bulkCounts.prioritized ?? 0),
        active: bulkCounts.active ?? 0,
        delayed: bulkCounts.delayed ?? 0,
      },
    };
    await redis.set(explainKey(prefix, 'budget', pool.name), JSON.stringify(explanation), 'PX', EXPLAIN_TTL_MS);
    return explanation;
  }
}

/** The pool's signals from its ready workers' heartbeats and the real-time queue. */
export function poolSignals(
  ready: readonly Heartbeat[],
  queue: Pick<BudgetSignals, 'realtimeWaiting' | 'oldestQueuedMs'>,
): BudgetSignals {
  let bulkSlots = 0;
  let bulkRunning = 0;
  for (const w of ready) {
    for (const lane of w.lanes) {
      if (lane.name !== 'bulk') continue;
      bulkSlots += lane.concurrency;
      bulkRunning += lane.inFlight;
    }
  }
  const firstToken = mergeCounts(ready.flatMap((w) => (w.realtime ? [w.realtime.firstToken] : [])));
  // A request still waiting for its first token on a worker counts like one waiting in the queue.
  const pending = Math.max(0, ...ready.map((w) => w.realtime?.oldestPendingMs ?? 0));
  return { bulkSlots, bulkRunning, firstToken, ...queue, oldestWaitingMs: Math.max(queue.oldestQueuedMs, pending) };
}

/** Decisions that give bulk everything: applied as no cap (see bulk-budget.ts). */
const uncapped = (reason: BudgetReason): boolean => reason === 'no_realtime_load' || reason === 'no_bulk_slots';

const fmt = (ms: number | undefined): string => (ms === undefined ? 'n/a' : ms.toFixed(0));
