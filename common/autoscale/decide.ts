/**
 * The autoscaling decision for one pool: snapshot + policy + state + clock →
 * desired replicas, a typed reason and the parts that made it. Pure; the
 * leader's loop (autoscale-loop.ts) runs it every `autoscaler.everyMs` and
 * the replay (replay/) runs the very same function over a trace.
 *
 * Order of work:
 * 1. Missing or stale signals hold: a Redis outage, or replicas ready with
 *    no heartbeat to say what they do, never moves the pool (and never
 *    toward zero).
 * 2. The recommendation: the largest of real-time (forecast), real-time
 *    plus what batch deadlines need, training, running gangs, the schedule
 *    floor and minReplicas; then maxReplicas and the cost cap. Replicas
 *    running training ranks stay even above the caps: a gang is never
 *    scaled out from under.
 * 3. Pacing, as HPA's `behavior`: a rise applies the lowest recommendation
 *    of the scale-up window, a fall the highest of the scale-down window,
 *    each at most `maxStep` per `periodMs`. Two exceptions: the first job
 *    on a pool at zero wakes it at once, and the step to zero waits only
 *    for `idleToZeroMs` of no work (KEDA's cooldownPeriod).
 */
import type { ResolvedPolicy } from './policy.ts';
import {
  bulkNeed,
  costCapReplicas,
  floorAt,
  forecastAt,
  forecastHorizon,
  hasWork,
  nextCapacity,
  realtimeDemandNow,
  realtimeMissing,
  replicasFor,
  trainingReplicas,
} from './demand.ts';
import type { AutoscaleDecision, AutoscaleReason, AutoscaleState, DemandParts, PoolSnapshot } from './types.ts';

export type MissingSnapshot = { pool: string; missing: string };

export interface DecideResult {
  decision: AutoscaleDecision;
  state: AutoscaleState;
}

/**
 * A fresh state (a new leader) counts the pool's size as a recommendation just made, so that the
 * first decisions of a term respect the stabilization windows too (no scale-in right after failover).
 */
export function initialState(policy: ResolvedPolicy, current: number, now: number): AutoscaleState {
  return {
    desired: current,
    recommendations: [{ at: now, replicas: current }],
    changes: [],
    demand: [],
    capacity: {
      unitsPerSecond: policy.capacityHint,
      source: 'hint',
      base: { unitsPerSecond: policy.capacityHint, source: 'hint' },
    },
    idleSince: undefined,
    lastGoodAt: undefined,
  };
}

const noParts = (): DemandParts => ({ realtime: 0, bulk: 0, training: 0, running: 0, floor: 0, costCap: undefined });

/** The decision that changes nothing, for missing signals. */
function hold(pool: string, state: AutoscaleState, policy: ResolvedPolicy): DecideResult {
  const decision: AutoscaleDecision = {
    pool,
    desired: state.desired,
    previous: state.desired,
    reason: 'hold_missing_signals',
    recommendation: state.desired,
    parts: noParts(),
    realtime: {
      nowUnitsPerSecond: 0,
      forecastUnitsPerSecond: 0,
      objectiveMs: policy.realtime.objectiveMs,
      firstTokenMs: undefined,
    },
    capacity: state.capacity,
    bulk: { neededUnitsPerSecond: 0, tightest: undefined },
    costPerHour: state.desired * policy.cost.pricePerReplicaHour,
  };
  return { decision, state };
}

/** Why the signals cannot be trusted this pass, or undefined when they can. */
export function missingSignals(s: PoolSnapshot, policy: ResolvedPolicy, now: number): string | undefined {
  if (now - s.at > policy.staleAfterMs) return `snapshot is ${now - s.at} ms old (staleAfterMs ${policy.staleAfterMs})`;
  if (s.replicas.ready > 0 && s.workers.ready + s.workers.draining === 0) {
    return `${s.replicas.ready} replicas ready but no worker heartbeat`;
  }
  return undefined;
}

export function decide(
  snapshot: PoolSnapshot | MissingSnapshot,
  policy: ResolvedPolicy,
  prior: AutoscaleState | undefined,
  now: number,
): DecideResult {
  if ('missing' in snapshot) return hold(snapshot.pool, prior ?? initialState(policy, 0, now), policy);
  const s = snapshot;
  const prev = prior ?? initialState(policy, s.replicas.desired, now);
  if (missingSignals(s, policy, now) !== undefined) return hold(s.pool, prev, policy);
  const current = s.replicas.desired;

  // Demand, capacity, forecast.
  const rtMissing = realtimeMissing(s, policy);
  const capacity = nextCapacity(prev.capacity, s, rtMissing);
  const demandNow = realtimeDemandNow(s, policy);
  const demand = [
    ...prev.demand.filter((d) => now - d.at < policy.realtime.forecastWindowMs),
    { at: now, unitsPerSecond: demandNow },
  ];
  const forecast = Math.max(demandNow, forecastAt(demand, forecastHorizon(demand, now, policy.startupMs)));
  const perReplicaRt = capacity.unitsPerSecond * policy.realtime.targetUtilization;
  let realtime = replicasFor(forecast, perReplicaRt);
  const missing = rtMissing && s.queues.bulk.active === 0 && s.replicas.ready > 0;
  if (missing) realtime = Math.max(realtime, s.replicas.ready + 1);

  const costCap = costCapReplicas(policy);
  const ceiling = Math.min(policy.maxReplicas, costCap ?? Number.POSITIVE_INFINITY);
  const unitsPerRecord = s.bulk.unitsPerRecord ?? 1;
  const bulk = bulkNeed(
    {
      batches: s.bulk.batches,
      unitsPerRecord,
      capacity: capacity.unitsPerSecond,
      realtimeUnits: forecast,
      ready: s.replicas.ready,
      base: realtime,
      max: ceiling,
    },
    policy,
    now,
  );
  const parts: DemandParts = {
    realtime,
    bulk: Math.max(0, bulk.replicas - realtime),
    training: trainingReplicas(s, policy),
    running: s.training.replicasWithRanks,
    floor: floorAt(policy.floors, now),
    costCap,
  };
  const work = hasWork(s);
  const idleSince = work ? undefined : (prev.idleSince ?? now);

  // The recommendation and the part that set it (ties go to the first listed).
  const candidates: Array<[AutoscaleReason, number]> = [
    [missing ? 'realtime_objective_miss' : 'realtime_forecast', realtime],
    ['bulk_deadline', realtime + parts.bulk],
    ['training_gangs', parts.training],
    ['training_running', parts.running],
    ['floor', parts.floor],
    ['min_replicas', policy.minReplicas],
  ];
  let [reason, recommendation] = candidates.reduce((best, c) => (c[1] > best[1] ? c : best));
  if (recommendation === 0 && work) [reason, recommendation] = ['wake_from_zero', 1];
  if (recommendation > ceiling) {
    reason = ceiling === policy.maxReplicas ? 'max_replicas' : 'cost_cap';
    recommendation = ceiling;
  }
  if (recommendation < parts.running) [reason, recommendation] = ['training_running', parts.running];
  // With minReplicas 0, one replica stays until the pool has been idle for idleToZeroMs.
  const idleLongEnough = idleSince !== undefined && now - idleSince >= policy.idleToZeroMs;
  if (recommendation === 0 && current > 0 && !idleLongEnough) recommendation = 1;

  const recommendations = [
    ...prev.recommendations.filter(
      (r) => now - r.at < Math.max(policy.scaleUp.stabilizationMs, policy.scaleDown.stabilizationMs),
    ),
    { at: now, replicas: recommendation },
  ];
  const { desired, pacedReason } = pace(current, recommendation, reason, recommendations, prev.changes, policy, now, {
    wake: current === 0 && recommendation > 0,
    toZero: recommendation === 0 && idleLongEnough,
  });
  const changes = [
    ...prev.changes.filter((c) => now - c.at < Math.max(policy.scaleUp.periodMs, policy.scaleDown.periodMs)),
  ];
  if (desired !== current) changes.push({ at: now, delta: desired - current });

  const state: AutoscaleState = { desired, recommendations, changes, demand, capacity, idleSince, lastGoodAt: now };
  const decision: AutoscaleDecision = {
    pool: s.pool,
    desired,
    previous: current,
    reason: pacedReason,
    recommendation,
    parts,
    realtime: {
      nowUnitsPerSecond: demandNow,
      forecastUnitsPerSecond: forecast,
      objectiveMs: policy.realtime.objectiveMs,
      firstTokenMs: s.realtime.firstTokenMs,
    },
    capacity,
    bulk: { neededUnitsPerSecond: bulk.neededUnitsPerSecond, tightest: bulk.tightest },
    costPerHour: desired * policy.cost.pricePerReplicaHour,
  };
  return { decision, state };
}

/** HPA-style stabilization windows and step limits between `current` and the recommendation. */
function pace(
  current: number,
  recommendation: number,
  reason: AutoscaleReason,
  recommendations: AutoscaleState['recommendations'],
  changes: AutoscaleState['changes'],
  policy: ResolvedPolicy,
  now: number,
  bypass: { wake: boolean; toZero: boolean },
): { desired: number; pacedReason: AutoscaleReason } {
  if (recommendation === current) return { desired: current, pacedReason: reason };
  if (bypass.toZero) return { desired: 0, pacedReason: 'idle_to_zero' };
  const up = recommendation > current;
  const step = up ? policy.scaleUp : policy.scaleDown;
  // The recommendations of the window; with no window, just this one.
  const window =
    step.stabilizationMs === 0
      ? [recommendation]
      : recommendations.filter((r) => now - r.at < step.stabilizationMs).map((r) => r.replicas);
  const stabilized = bypass.wake ? recommendation : up ? Math.min(...window) : Math.max(...window);
  if (up ? stabilized <= current : stabilized >= current) {
    return { desired: current, pacedReason: up ? 'stabilizing_up' : 'stabilizing_down' };
  }
  const moved = changes
    .filter((c) => now - c.at < step.periodMs && (up ? c.delta > 0 : c.delta < 0))
    .reduce((sum, c) => sum + Math.abs(c.delta), 0);
  const allowance = Math.max(0, step.maxStep - moved);
  const limited = up ? Math.min(stabilized, current + allowance) : Math.max(stabilized, current - allowance);
  // A pool at zero with work gets its first replica whatever the step budget says.
  const desired = bypass.wake ? Math.max(limited, 1) : limited;
  // Held or cut by the step budget (a held pool has desired === current, never === stabilized).
  if (desired !== stabilized) return { desired, pacedReason: up ? 'max_step_up' : 'max_step_down' };
  if (stabilized !== recommendation) return { desired, pacedReason: up ? 'stabilizing_up' : 'stabilizing_down' };
  return { desired, pacedReason: reason };
}
