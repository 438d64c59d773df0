/**
 * The fleet model of the replay: one pool of identical replicas, ticked in
 * whole seconds of model time, deterministic (no clock, no randomness: the
 * trace was shaped and the engine curve measured before).
 *
 * Each second:
 * - replicas asked for become ready `startupMs` after the ask; a scale-in
 *   removes replicas at once, starting ones first (newest first), then
 *   ready ones. Drain-safe by construction: the model is fluid, a removed
 *   replica's in-flight real-time requests and its running bulk records are
 *   finished by the others (they are part of the load the next second
 *   spreads), nothing is lost or done twice; a replica stops costing the
 *   second it is removed (no drain grace period is charged, for any policy).
 * - real-time arrivals join a backlog served by the ready replicas up to
 *   their saturated capacity (the curve's rtSaturated each), spread evenly,
 *   counted in requests × the mix's mean units (a request takes a sequence
 *   whatever its prompt; see the loop). The backlog is what BullMQ's `wait` list holds (a worker
 *   takes a request as soon as its engine has room); served requests are
 *   `active` for their time in the engine (Little's law, from the curve).
 * - first-token p99 of the second: the curve's p99 at the load the engines'
 *   queues have settled to (the per-replica load over the last 10 s, the
 *   heartbeat window, in requests × the mix's mean units, through a
 *   first-order lag with the engine queue's relaxation time at that load:
 *   engine-curve.ts settleLoad; the curve is a steady state, a short burst
 *   does not reach it), moved toward the co-located curve
 *   by the share of bulk running, plus the backlog's queue wait (backlog ÷
 *   capacity) when there is one; with no replica ready, the age of the oldest
 *   waiting request. Time in the engine (in-flight counts) is read at the same
 *   settled load; the bulk a replica leaves over at the 10 s window's load.
 * - bulk: open batches (arrived, records left) are worked earliest deadline
 *   first with what real-time leaves: each replica does the curve's bulk
 *   units/s at its real-time load, throttled as the scheduler's balance pass
 *   throttles bulk to keep real-time within its objective: bulk runs on a
 *   share of the replicas (those running a chunk are full: the curve's bulk
 *   units beside their real-time load), cut so that the modelled p99 (the
 *   alone curve moved toward the co-located one by that share) stays within
 *   90 % of the objective; no bulk while real-time has a backlog. A batch done
 *   after its deadline, or not done when the replay ends, is late.
 *
 * Every `everyMs` the scaler (decide() or a baseline) gets a PoolSnapshot built
 * as the live loop builds it: queue counts by state, real-time units and
 * requests per second over the 10 s heartbeat window, the window's first-token
 * p99 and samples, the oldest wait, measured capacity when replicas were full
 * (a bulk chunk running), the open batches with records left and deadlines,
 * and replicas desired and ready.
 */
import type { OpenBatch, PoolSnapshot, QueueCounts } from '../types.ts';
import { emptyQueueCounts } from '../types.ts';
import type { ReplayBatch } from './batches.ts';
import { curveAt, settleLoad, type EngineCurve } from './engine-curve.ts';

/** A replay's input: real-time arrivals per second and the batches. */
export interface Workload {
  /** Real-time work units arriving in each second of the replay. */
  rtUnits: readonly number[];
  /** Real-time requests arriving in each second. */
  rtRequests: readonly number[];
  batches: readonly ReplayBatch[];
  /** Work units of one bulk record (its prompt plus output tokens). */
  bulkUnitsPerRecord: number;
  /** Seconds the replay runs (at least the trace and the last deadline). */
  seconds: number;
  /** Epoch ms of the replay's second 0 (what decide() reads as `now`; cron floors use it). */
  epochMs: number;
}

/** What one pool does: the scaler's view each `everyMs`, its answer the replica count to ask for. */
export interface Scaler {
  readonly name: string;
  readonly everyMs: number;
  /** Replicas the pool has, ready, at second 0 (a warm start). */
  readonly initialReplicas: number;
  desired(snapshot: PoolSnapshot, now: number): number;
}

export interface PoolModelOptions {
  curve: EngineCurve;
  objectiveMs: number;
  startupMs: number;
  /** Pool name in the snapshots. */
  pool?: string;
  /** Records per chunk job (batch.chunkLines, 5000). */
  chunkRecords?: number;
  /** Chunk jobs admitted into Redis per pool at a time (batch.windowPerPool, 16). */
  admissionWindow?: number;
  /** Bulk chunks one replica runs at once (lanes.bulk.concurrency, 1). */
  bulkSlotsPerReplica?: number;
  /** The heartbeat window rates and quantiles are read over (10 s). */
  windowMs?: number;
  /** Bulk is throttled to keep the modelled p99 within this share of the objective (0.9). */
  throttleShare?: number;
  /** Called with the share of the replay done, now and then. */
  onProgress?: (done: number) => void;
}

/** Per second of the replay. */
export interface PoolSeries {
  /** Replicas that cost (starting + ready). */
  replicas: number[];
  ready: number[];
  /** What the scaler asked for last. */
  desired: number[];
  /** Modelled first-token p99 of the second; NaN when no real-time request was waiting or served. */
  ttftMs: number[];
  rtArrivedUnits: number[];
  rtArrivedRequests: number[];
  rtServedUnits: number[];
  bulkUnits: number[];
}

export interface BatchOutcome {
  id: string;
  records: number;
  arrivalMs: number;
  deadlineMs: number;
  /** Replay ms when its last record was done; undefined: not done by the end. */
  doneMs: number | undefined;
  late: boolean;
}

export interface PoolRun {
  scaler: string;
  series: PoolSeries;
  batches: BatchOutcome[];
}

interface Replica {
  readyAt: number;
}

interface Second {
  ready: number;
  servedUnits: number;
  servedRequests: number;
  arrivedRequests: number;
  ttftMs: number;
  bulkUnits: number;
  bulkShare: number;
}

export function runPool(workload: Workload, scaler: Scaler, options: PoolModelOptions): PoolRun {
  const o = {
    pool: 'pool',
    chunkRecords: 5000,
    admissionWindow: 16,
    bulkSlotsPerReplica: 1,
    windowMs: 10_000,
    throttleShare: 0.9,
    ...options,
  };
  const { curve } = o;
  const windowS = Math.max(1, Math.round(o.windowMs / 1000));
  const upr = curve.unitsPerRequest;
  const rtSat = curve.rtSaturatedUnitsPerSecond;
  const last = curve.points.at(-1)!;
  const limit = o.throttleShare * o.objectiveMs;
  const series: PoolSeries = {
    replicas: [],
    ready: [],
    desired: [],
    ttftMs: [],
    rtArrivedUnits: [],
    rtArrivedRequests: [],
    rtServedUnits: [],
    bulkUnits: [],
  };
  const left = workload.batches.map((b) => b.records * workload.bulkUnitsPerRecord);
  const outcomes: BatchOutcome[] = workload.batches.map((b) => ({
    id: b.id,
    records: b.records,
    arrivalMs: b.arrivalMs,
    deadlineMs: b.deadlineMs,
    doneMs: undefined,
    late: false,
  }));
  const byDeadline = workload.batches
    .map((_, i) => i)
    .sort((a, b) => {
      const x = workload.batches[a]!;
      const y = workload.batches[b]!;
      return x.deadlineMs - y.deadlineMs || x.arrivalMs - y.arrivalMs;
    });

  let replicas: Replica[] = Array.from({ length: scaler.initialReplicas }, () => ({ readyAt: 0 }));
  let desired = scaler.initialReplicas;
  /** Real-time requests waiting, × the mix's mean units; and their own units. */
  let backlogUnits = 0;
  let backlogActual = 0;
  /** When the oldest request still waiting with no replica ready arrived (ms), if any. */
  let waitingSince: number | undefined;
  let inFlight = 0;
  /** Per-replica load (units/s) whose steady state the ready replicas' engine queues show. */
  let settled = 0;
  const recent: Second[] = [];
  const progressEvery = Math.max(1, Math.floor(workload.seconds / 100));

  const snapshot = (t: number, ready: number): PoolSnapshot => {
    const win = recent.slice(-windowS);
    const span = Math.max(1, win.length);
    let served = 0;
    let servedReq = 0;
    let samples = 0;
    let p99: number | undefined;
    let bulk = 0;
    let fullReplicaS = 0;
    let fullUnits = 0;
    for (const s of win) {
      served += s.servedUnits;
      servedReq += s.servedRequests;
      bulk += s.bulkUnits;
      if (s.ready > 0 && s.servedRequests > 0) {
        samples += s.servedRequests;
        if (Number.isFinite(s.ttftMs)) p99 = Math.max(p99 ?? 0, s.ttftMs);
      }
      if (s.ready > 0 && s.bulkShare > 0) {
        // The replicas running a chunk are full: their real-time share plus the bulk they did.
        const full = s.ready * s.bulkShare;
        fullReplicaS += full;
        fullUnits += (s.servedUnits / s.ready) * full + s.bulkUnits;
      }
    }
    const lastSecond = win.at(-1);
    const capacityNow = ready * rtSat;
    const oldestWaitingMs =
      backlogUnits <= 0
        ? 0
        : ready === 0
          ? t - (waitingSince ?? t)
          : (backlogUnits / Math.max(1e-9, capacityNow)) * 1000;
    const rt: QueueCounts = {
      ...emptyQueueCounts(),
      wait: Math.round(backlogUnits / upr),
      active: Math.round(inFlight),
    };
    const open: OpenBatch[] = [];
    let chunks = 0;
    workload.batches.forEach((b, i) => {
      if (b.arrivalMs > t || left[i]! <= 0) return;
      const records = Math.ceil(left[i]! / workload.bulkUnitsPerRecord - 1e-9);
      open.push({ id: b.id, recordsLeft: records, deadlineAt: workload.epochMs + b.deadlineMs });
      chunks += Math.ceil(records / o.chunkRecords);
    });
    const admitted = Math.min(chunks, o.admissionWindow);
    const running =
      lastSecond && lastSecond.bulkShare > 0
        ? Math.min(admitted, Math.max(1, Math.round(ready * lastSecond.bulkShare)) * o.bulkSlotsPerReplica)
        : 0;
    const bulkQ: QueueCounts = { ...emptyQueueCounts(), prioritized: admitted - running, active: running };
    return {
      pool: o.pool,
      at: workload.epochMs + t,
      replicas: { desired, ready },
      workers: { ready, starting: replicas.length - ready, draining: 0 },
      queues: { rt, bulk: bulkQ, train: emptyQueueCounts() },
      realtime: {
        unitsPerSecond: served / span,
        requestsPerSecond: servedReq / span,
        firstTokenMs: samples > 0 ? p99 : undefined,
        samples: Math.round(samples),
        oldestWaitingMs,
      },
      capacity:
        fullReplicaS > 0 ? { unitsPerSecond: fullUnits / fullReplicaS, fullMs: fullReplicaS * 1000 } : undefined,
      bulk: {
        unitsPerRecord: bulk > 0 ? workload.bulkUnitsPerRecord : undefined,
        unitsPerSecond: bulk / span,
        batches: open,
      },
      training: { slotsPerReplica: 0, slotsHeld: 0, waitingGangs: [], replicasWithRanks: 0 },
    };
  };

  for (let i = 0; i < workload.seconds; i++) {
    const t = i * 1000;
    let ready = replicas.filter((r) => r.readyAt <= t).length;
    if (t % scaler.everyMs === 0 && (i > 0 || recent.length > 0)) {
      desired = Math.max(0, Math.round(scaler.desired(snapshot(t, ready), workload.epochMs + t)));
      if (desired > replicas.length) {
        for (let k = replicas.length; k < desired; k++) replicas.push({ readyAt: t + o.startupMs });
      } else if (desired < replicas.length) {
        // Starting replicas go first (the newest), then ready ones.
        replicas = [...replicas].sort((a, b) => a.readyAt - b.readyAt).slice(0, desired);
      }
      ready = replicas.filter((r) => r.readyAt <= t).length;
    }

    // Real-time.
    const arrivedUnits = workload.rtUnits[i] ?? 0;
    const arrivedReq = workload.rtRequests[i] ?? 0;
    // A replica takes a request whenever one of its sequences is free, whatever its prompt: its
    // capacity is requests of the trace's mix (the curve's saturated rate ÷ the mix's mean units),
    // so the queue and what is served are counted in requests × the mix's mean units. Counted in
    // the requests' own units, a second holding a few long prompts (prefill, cheap per token)
    // queued as if it were several seconds of work, and read the curve near saturation: at a few
    // requests a second the minute p99 came out at 5–10 s where the live fleet measured under 1 s
    // (bench:autoscale-live). The units actually served, in the same share, are what the snapshot
    // reports, as workers report theirs.
    const capacity = ready * rtSat;
    const demand = backlogUnits + arrivedReq * upr;
    const served = Math.min(demand, capacity);
    const servedShare = demand > 0 ? served / demand : 1;
    const demandActual = backlogActual + arrivedUnits;
    const servedUnits = demandActual * servedShare;
    backlogUnits = demand - served;
    backlogActual = demandActual - servedUnits;
    if (backlogUnits < 1e-6) backlogUnits = backlogActual = 0;
    if (backlogUnits > 0 && ready === 0) waitingSince ??= t;
    if (ready > 0 || backlogUnits === 0) waitingSince = undefined;
    const servedRequests = served / upr;
    const prevServed = recent.slice(-(windowS - 1)).reduce((s, r) => s + r.servedRequests * upr, 0);
    const span = Math.min(windowS, recent.length + 1);
    const load = ready > 0 ? (prevServed + served) / span / ready : 0;
    // Latency is read where the engines' queues have got to, not at the window's rate: a 10 s burst
    // at twice a moderate load read as its steady state gave a minute p99 of 4–7 s where the live
    // fleet measured under 2 s (bench:autoscale-live). Replicas that join or leave change the
    // per-replica load the lag follows (the fluid model spreads the work evenly at once).
    settled = ready > 0 ? settleLoad(curve, settled, load, 1000) : 0;
    const point = curveAt(curve, settled);
    const bulkLeft = curveAt(curve, load).bulkUnitsPerSecond;

    // Bulk: what real-time leaves, throttled to keep real-time within the objective.
    let share = 0;
    const openIdx = byDeadline.filter((k) => workload.batches[k]!.arrivalMs <= t && left[k]! > 0);
    if (ready > 0 && openIdx.length > 0 && backlogUnits === 0) {
      const rtPresent = load > 0 || settled > 0 || arrivedUnits > 0;
      const extra = point.withBulkTtftMs - point.aloneTtftMs;
      if (!rtPresent || point.withBulkTtftMs <= limit || extra <= 0) share = 1;
      else share = Math.min(1, Math.max(0, (limit - point.aloneTtftMs) / extra));
    }
    const offered = ready * share * bulkLeft;
    let bulkDone = 0;
    for (const k of openIdx) {
      if (bulkDone >= offered) break;
      const take = Math.min(left[k]!, offered - bulkDone);
      left[k]! -= take;
      bulkDone += take;
      if (left[k]! <= 1e-6) {
        left[k] = 0;
        const out = outcomes[k]!;
        out.doneMs = t + 1000;
        out.late = out.doneMs > out.deadlineMs;
      }
    }
    // Bulk that ran for part of its offer interferes for that part.
    const used = offered > 0 ? share * (bulkDone / offered) : 0;
    const ttftEngine = point.aloneTtftMs + used * (point.withBulkTtftMs - point.aloneTtftMs);
    let ttft = Number.NaN;
    if (ready === 0 && backlogUnits > 0) ttft = t - (waitingSince ?? t) + last.aloneTtftMs;
    else if (backlogUnits > 0) ttft = ttftEngine + (backlogUnits / capacity) * 1000;
    else if (arrivedReq > 0 || served > 0) ttft = ttftEngine;
    const residence = point.aloneResidenceMs + used * (point.withBulkResidenceMs - point.aloneResidenceMs);
    inFlight = (((prevServed + served) / span / upr) * residence) / 1000;

    recent.push({
      ready,
      servedUnits,
      servedRequests,
      arrivedRequests: arrivedReq,
      ttftMs: ttft,
      bulkUnits: bulkDone,
      bulkShare: used,
    });
    if (recent.length > windowS) recent.shift();
    series.replicas.push(replicas.length);
    series.ready.push(ready);
    series.desired.push(desired);
    series.ttftMs.push(ttft);
    series.rtArrivedUnits.push(arrivedUnits);
    series.rtArrivedRequests.push(arrivedReq);
    series.rtServedUnits.push(servedUnits);
    series.bulkUnits.push(bulkDone);
    if (o.onProgress && i % progressEvery === 0) o.onProgress(i / workload.seconds);
  }
  for (const out of outcomes) if (out.doneMs === undefined) out.late = true;
  return { scaler: scaler.name, series, batches: outcomes };
}
