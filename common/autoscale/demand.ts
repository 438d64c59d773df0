/**
 * The demand model: how many replicas each kind of work asks for, from one
 * snapshot of the pool. Pure; decide.ts combines the parts and applies the
 * policy's limits and pacing.
 *
 * - Real-time is sized from a forecast: a least-squares line through the
 *   recent demand, read `startupMs` ahead, because a replica asked for now
 *   serves only after its start-up. A falling trend never lowers the
 *   forecast below the demand now (scale-down is the stabilization window's
 *   business, not the forecast's).
 * - Bulk fills what real-time leaves (the bulk budget lets chunks take the
 *   engine whenever real-time does not need it), and asks for more replicas
 *   only when an open batch would otherwise miss its deadline: earliest
 *   deadline first, counting that replicas added now work only after their
 *   start-up.
 * - Training asks for the slots of the admitted gangs plus those of the
 *   waiting gangs that can fit at all; replicas running ranks are kept.
 */
import { CronExpressionParser } from 'cron-parser';
import type { ResolvedPolicy, ScheduleFloor } from './policy.ts';
import { queuedJobs, type AutoscaleState, type OpenBatch, type PoolSnapshot } from './types.ts';

/** A window needs this many requests before its quantile can say "missed" (one slow request in 20 is p95). */
const MIN_SAMPLES_FOR_MISS = 20;
/** Weight of a new measured-capacity sample (an EWMA: a few passes to follow a changed model or GPU). */
const CAPACITY_EWMA = 0.3;

/** Real-time demand now (units/s): what finished, plus the backlog drained over the start-up time. */
export function realtimeDemandNow(s: PoolSnapshot, policy: ResolvedPolicy): number {
  const backlog = s.queues.rt.wait + s.queues.rt.prioritized;
  const unitsPerRequest =
    s.realtime.requestsPerSecond > 0 ? s.realtime.unitsPerSecond / s.realtime.requestsPerSecond : 1;
  const drainS = Math.max(policy.startupMs, 10_000) / 1000;
  return s.realtime.unitsPerSecond + (backlog * unitsPerRequest) / drainS;
}

/**
 * How far ahead decide() reads the forecast: `startupMs`, but never further ahead of the last point
 * than the history spans (a trend fitted over 30 s says nothing about 120 s from now: a new
 * leader's first passes, a replay's warm start).
 */
export function forecastHorizon(history: AutoscaleState['demand'], now: number, startupMs: number): number {
  const span = history.length > 0 ? now - history[0]!.at : 0;
  return now + Math.min(startupMs, span);
}

/** The demand history's least-squares line read at `at`; the last value with fewer than three points. */
export function forecastAt(history: AutoscaleState['demand'], at: number): number {
  const n = history.length;
  if (n === 0) return 0;
  if (n < 3) return history[n - 1]!.unitsPerSecond;
  const t0 = history[0]!.at;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (const { at: t, unitsPerSecond: y } of history) {
    const x = (t - t0) / 1000;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const denom = n * sxx - sx * sx;
  if (denom <= 0) return sy / n;
  const slope = (n * sxy - sx * sy) / denom;
  const intercept = (sy - slope * sx) / n;
  return Math.max(0, intercept + slope * ((at - t0) / 1000));
}

/** True when real-time misses its objective on its own (no bulk chunk running to blame). */
export function realtimeMissing(s: PoolSnapshot, policy: ResolvedPolicy): boolean {
  const objective = policy.realtime.objectiveMs;
  const quantileMiss = s.realtime.samples >= MIN_SAMPLES_FOR_MISS && (s.realtime.firstTokenMs ?? 0) > objective;
  return quantileMiss || s.realtime.oldestWaitingMs > objective;
}

/**
 * The per-replica capacity to plan with.
 *
 * `missing`: realtimeMissing() of this snapshot. The base is the policy's hint until a full replica reports its throughput, then an EWMA of those
 * measurements. A real-time miss while real-time alone fills the replicas (a backlog waits, no bulk
 * chunk runs) is a measurement too: what they finished per replica is all they can do, so planning
 * takes at most that. The bound relaxes back toward the base pass by pass, so that one slow window
 * (a heartbeat window that began before the load did reads low) does not stick: the next saturated
 * miss, if the replicas really are slower than the base says, bounds it again.
 */
export function nextCapacity(
  prev: AutoscaleState['capacity'],
  s: PoolSnapshot,
  missing: boolean,
): AutoscaleState['capacity'] {
  let base = prev.base;
  if (s.capacity && s.capacity.unitsPerSecond > 0) {
    const sample = s.capacity.unitsPerSecond;
    const unitsPerSecond =
      base.source === 'hint' ? sample : base.unitsPerSecond + CAPACITY_EWMA * (sample - base.unitsPerSecond);
    base = { unitsPerSecond, source: 'measured' };
  }
  const ready = s.replicas.ready;
  const backlog = s.queues.rt.wait + s.queues.rt.prioritized;
  const saturated = ready > 0 && backlog > 0 && s.queues.bulk.active === 0 && s.realtime.unitsPerSecond > 0 && missing;
  const planned =
    prev.source === 'objective_miss'
      ? prev.unitsPerSecond + CAPACITY_EWMA * (base.unitsPerSecond - prev.unitsPerSecond)
      : base.unitsPerSecond;
  if (saturated && s.realtime.unitsPerSecond / ready < planned) {
    return { unitsPerSecond: s.realtime.unitsPerSecond / ready, source: 'objective_miss', base };
  }
  // Within 1 % of the base the bound is spent.
  if (prev.source === 'objective_miss' && planned < base.unitsPerSecond * 0.99) {
    return { unitsPerSecond: planned, source: 'objective_miss', base };
  }
  return { unitsPerSecond: base.unitsPerSecond, source: base.source, base };
}

export const replicasFor = (unitsPerSecond: number, perReplica: number): number =>
  unitsPerSecond <= 0 ? 0 : Math.ceil(unitsPerSecond / perReplica - 1e-9);

export interface BulkNeed {
  /** The smallest replica count (≥ `base`, ≤ `max`) that finishes every open batch in time. */
  replicas: number;
  /** Units/s the batches need over their time left (the tightest prefix). */
  neededUnitsPerSecond: number;
  tightest: string | undefined;
  /** True when even `max` replicas cannot finish them in time. */
  late: boolean;
}

/** What bulkNeed weighs: the open batches and the fleet they would run on. */
export interface BulkSupply {
  batches: readonly OpenBatch[];
  unitsPerRecord: number;
  /** Per-replica capacity (units/s). */
  capacity: number;
  /** Units/s real-time takes from the fleet all the while (its forecast). */
  realtimeUnits: number;
  /** Replicas ready now: they work from now; replicas above them only after the start-up. */
  ready: number;
  /** The fewest replicas to consider (what real-time alone asks for). */
  base: number;
  /** The most replicas allowed (maxReplicas or the cost cap). */
  max: number;
}

/**
 * Earliest deadline first: for each prefix of the batches by deadline, the work in it must be done
 * by its last deadline (× deadlineSafety of the time left). `ready` replicas work from now, replicas
 * added above them only after startupMs, and real-time takes `realtimeUnits` of it all the while.
 */
export function bulkNeed(supply: BulkSupply, policy: ResolvedPolicy, now: number): BulkNeed {
  const { batches, unitsPerRecord, capacity, realtimeUnits, ready, base, max } = supply;
  const ordered = [...batches].filter((b) => b.recordsLeft > 0).sort((a, b) => a.deadlineAt - b.deadlineAt);
  const prefixes: Array<{ units: number; seconds: number; id: string }> = [];
  let units = 0;
  let needed = 0;
  let tightest: string | undefined;
  for (const b of ordered) {
    units += b.recordsLeft * unitsPerRecord;
    const seconds = (Math.max(0, b.deadlineAt - now) * policy.bulk.deadlineSafety) / 1000;
    prefixes.push({ units, seconds, id: b.id });
    const rate = seconds > 0 ? units / seconds : Number.POSITIVE_INFINITY;
    if (rate > needed) {
      needed = rate;
      tightest = b.id;
    }
  }
  const startupS = policy.startupMs / 1000;
  const fits = (n: number): boolean =>
    prefixes.every(({ units: u, seconds: t }) => {
      const early = Math.min(n, ready) * capacity - realtimeUnits;
      const late = Math.max(0, n - ready) * capacity;
      return early * t + late * Math.max(0, t - startupS) >= u;
    });
  for (let n = base; n <= max; n++) {
    if (fits(n)) return { replicas: n, neededUnitsPerSecond: needed, tightest, late: false };
  }
  return { replicas: Math.max(base, max), neededUnitsPerSecond: needed, tightest, late: prefixes.length > 0 };
}

/** Replicas for the admitted gangs plus every waiting gang that could ever fit; 0 without training slots. */
export function trainingReplicas(s: PoolSnapshot, policy: ResolvedPolicy): number {
  const slots = s.training.slotsPerReplica;
  if (slots <= 0) return 0;
  const room = policy.maxReplicas * slots;
  const waiting = policy.training.roomForWaitingGangs
    ? s.training.waitingGangs.filter((size) => size <= room).reduce((a, b) => a + b, 0)
    : 0;
  return replicasFor(s.training.slotsHeld + waiting, slots);
}

/** The highest schedule floor in force at `now`: a floor holds from each cron firing for its duration. */
export function floorAt(floors: readonly ScheduleFloor[], now: number): number {
  let floor = 0;
  for (const f of floors) {
    const last = CronExpressionParser.parse(f.cron, { currentDate: new Date(now + 1), tz: f.tz })
      .prev()
      .getTime();
    if (now - last < f.durationMs) floor = Math.max(floor, f.minReplicas);
  }
  return floor;
}

/** Replicas the cost cap allows (undefined: no cap). */
export function costCapReplicas(policy: ResolvedPolicy): number | undefined {
  const { pricePerReplicaHour: price, maxPerHour } = policy.cost;
  return maxPerHour === undefined || price <= 0 ? undefined : Math.floor(maxPerHour / price + 1e-9);
}

/** Whether the pool has work of any kind (queued, running, open batches, gangs, real-time traffic). */
export function hasWork(s: PoolSnapshot): boolean {
  const { rt, bulk, train } = s.queues;
  return (
    [rt, bulk, train].some((q) => queuedJobs(q) > 0) ||
    s.realtime.unitsPerSecond > 0 ||
    s.bulk.batches.some((b) => b.recordsLeft > 0) ||
    s.training.waitingGangs.length > 0 ||
    s.training.slotsHeld > 0
  );
}
