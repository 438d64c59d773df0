/**
 * What decides a replayed pool's size: interfleet's decide() (the very
 * function the leader runs) and the baselines of issue 12, all behind the
 * pool model's Scaler interface.
 *
 * The KEDA/HPA baselines model what users run today:
 * - one KEDA trigger per queue (rt and bulk), each an AverageValue target per
 *   replica: a trigger proposes ceil(metric ÷ target), HPA takes the largest
 *   proposal, with its 10 % tolerance (no change while metric ÷ (current ×
 *   target) is within 0.9..1.1);
 * - HPA's default `behavior`: scale-up with no stabilization, at most
 *   max(100 %, 4 pods) per 15 s; scale-down after a 300 s stabilization window
 *   (the highest recommendation of the window), at most 100 % per 15 s; HPA
 *   syncs every 15 s;
 * - KEDA's activation: with minReplicaCount 0, no trigger active for
 *   `cooldownPeriod` (300 s) takes the pool to zero, the first active trigger
 *   back to one (HPA then takes over).
 * `metric: 'wait'` reads only BullMQ's `wait` list (KEDA's Redis list
 * scaler on `bull:<queue>:wait`): bulk chunks carry a priority and sit in the
 * `prioritized` sorted set, so that trigger never sees them. `metric: 'all'`
 * counts every state that holds work (wait + prioritized + due delayed + active).
 */
import { decide, initialState } from '../decide.ts';
import type { ResolvedPolicy } from '../policy.ts';
import type { AutoscaleDecision, AutoscaleState, PoolSnapshot, QueueCounts } from '../types.ts';
import type { Scaler } from './pool-model.ts';

/** interfleet's policy: decide() every `everyMs` (autoscaler.everyMs, 5 s). */
export class DecideScaler implements Scaler {
  private state: AutoscaleState;
  /** The decisions, for explain-like reports (the last `keep`). */
  readonly decisions: AutoscaleDecision[] = [];

  constructor(
    readonly name: string,
    private readonly policy: ResolvedPolicy,
    readonly initialReplicas: number,
    epochMs: number,
    readonly everyMs = 5000,
    private readonly keep = 0,
  ) {
    this.state = initialState(policy, initialReplicas, epochMs);
  }

  desired(snapshot: PoolSnapshot, now: number): number {
    const { decision, state } = decide(snapshot, this.policy, this.state, now);
    this.state = state;
    if (this.keep > 0) {
      this.decisions.push(decision);
      if (this.decisions.length > this.keep) this.decisions.shift();
    }
    return decision.desired;
  }
}

/** A fixed count (static provisioning). */
export class StaticScaler implements Scaler {
  readonly everyMs = 60_000;
  constructor(
    readonly name: string,
    readonly initialReplicas: number,
  ) {}
  desired(): number {
    return this.initialReplicas;
  }
}

export interface KedaOptions {
  /** Which BullMQ states a trigger counts. */
  metric: 'wait' | 'all';
  /** Target jobs per replica of each trigger; a queue without one has no trigger. */
  targets: { rt?: number; bulk?: number };
  minReplicas: number;
  maxReplicas: number;
  /** KEDA cooldownPeriod (300 s): only for the step to zero. */
  cooldownMs?: number;
  /** HPA sync period (15 s). */
  syncMs?: number;
  /** HPA scaleDown stabilizationWindowSeconds (300 s). */
  downStabilizationMs?: number;
  /** HPA tolerance (0.1). */
  tolerance?: number;
}

export const kedaCount = (q: QueueCounts, metric: KedaOptions['metric']): number =>
  metric === 'wait' ? q.wait : q.wait + q.prioritized + q.delayedDue + q.active;

export class KedaHpaScaler implements Scaler {
  readonly everyMs: number;
  private lastActiveAt: number | undefined;
  private recommendations: Array<{ at: number; replicas: number }> = [];
  private readonly o: Required<KedaOptions>;

  constructor(
    readonly name: string,
    options: KedaOptions,
    readonly initialReplicas: number,
  ) {
    this.o = { cooldownMs: 300_000, syncMs: 15_000, downStabilizationMs: 300_000, tolerance: 0.1, ...options };
    this.everyMs = this.o.syncMs;
  }

  desired(s: PoolSnapshot, now: number): number {
    const { o } = this;
    const current = s.replicas.desired;
    const triggers: Array<[QueueCounts, number | undefined]> = [
      [s.queues.rt, o.targets.rt],
      [s.queues.bulk, o.targets.bulk],
    ];
    const active = triggers.filter(([, target]) => target !== undefined);
    const metrics = active.map(([q, target]) => ({ value: kedaCount(q, o.metric), target: target! }));
    const isActive = metrics.some((m) => m.value > 0);
    if (isActive || this.lastActiveAt === undefined) this.lastActiveAt = now;
    const floor = Math.max(1, o.minReplicas);
    if (current === 0) {
      // KEDA: the first active trigger activates the workload (0 → 1); HPA takes over from there.
      return isActive ? 1 : 0;
    }
    if (!isActive && o.minReplicas === 0 && now - this.lastActiveAt >= o.cooldownMs) {
      this.recommendations = [];
      return 0;
    }
    // HPA: one proposal per metric (AverageValue: ceil(total ÷ target)), within tolerance no change.
    const proposals = metrics.map(({ value, target }) => {
      const ratio = value / (current * target);
      return Math.abs(ratio - 1) <= o.tolerance ? current : Math.ceil(value / target);
    });
    let rec = Math.min(o.maxReplicas, Math.max(floor, ...proposals));
    this.recommendations = [
      ...this.recommendations.filter((r) => now - r.at < o.downStabilizationMs),
      { at: now, replicas: rec },
    ];
    if (rec < current) {
      // Scale-down: the highest recommendation of the stabilization window, at most 100 % per period.
      rec = Math.min(current, Math.max(...this.recommendations.map((r) => r.replicas)));
    } else if (rec > current) {
      // Scale-up: no stabilization, at most max(100 %, 4 pods) per sync period.
      rec = Math.min(rec, Math.max(2 * current, current + 4));
    }
    return Math.min(o.maxReplicas, Math.max(floor, rec));
  }
}
