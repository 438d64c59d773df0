/**
 * What one replica does at a given real-time load, measured once per replay
 * on the sim backend's engine model (common/sim: vLLM-like continuous
 * batching, Llama-2-70B on H100), so that the fleet model (pool-model.ts) can
 * tick in whole seconds instead of engine steps.
 *
 * For per-replica real-time loads on a grid (work units/s at the trace's
 * token mix, Poisson arrivals), simulate() gives:
 * - the quantile (p99) of time to first token with the engine to real-time
 *   alone, and the mean time a chat stays in the engine (for in-flight counts);
 * - the same with an endless bulk backlog co-located (engine real-time first:
 *   bulk at a lower priority fills every free sequence), and the bulk work
 *   units/s that are left over;
 * plus the saturated capacities: units/s with the engine full of real-time
 * alone (above it real-time queues) and full of bulk alone.
 *
 * Quantiles from a finite window are noisy; the curves are made monotone
 * (running maximum of latency, running minimum of bulk left) so that more
 * load never reads faster. Everything is deterministic (seeded arrivals).
 */
import { LLAMA2_70B_H100, type Calibration } from '../../sim/sim-model.ts';
import { simulate, type SchedulerConfig, type TraceRequest } from '../../sim/sim-scheduler.ts';
import { seededRandom as rng } from './trace.ts';

export interface TokenShape {
  promptTokens: number;
  outputTokens: number;
}

export interface CurveInput {
  /** Real-time requests' token pairs, in trace order (sampled cyclically). */
  mix: readonly TokenShape[];
  /** One bulk record. */
  bulk: TokenShape;
  engine: SchedulerConfig;
  calibration?: Calibration;
  /** The latency quantile (0.99). */
  quantile?: number;
  /** Grid points between 0 and real-time saturation (default 16). */
  points?: number;
  /** Real-time requests per grid point (default 1,500): more is smoother and slower. */
  requestsPerPoint?: number;
  seed?: number;
}

export interface CurvePoint {
  /** Per-replica real-time load, work units/s. */
  rtUnitsPerSecond: number;
  /** Real-time alone: quantile of time to first token, mean time in the engine (ms). */
  aloneTtftMs: number;
  aloneResidenceMs: number;
  /** With the bulk backlog co-located. */
  withBulkTtftMs: number;
  withBulkResidenceMs: number;
  /** Bulk work units/s the replica finishes beside that real-time load. */
  bulkUnitsPerSecond: number;
}

export interface EngineCurve {
  points: readonly CurvePoint[];
  /** Real-time units/s of a replica whose engine is full of real-time (its ceiling). */
  rtSaturatedUnitsPerSecond: number;
  /** Bulk units/s of a replica full of bulk alone. */
  bulkSaturatedUnitsPerSecond: number;
  /** Mean units of a real-time request in the mix. */
  unitsPerRequest: number;
  bulkUnitsPerRecord: number;
  quantile: number;
}

const units = (s: TokenShape): number => s.promptTokens + s.outputTokens;

function quantileOf(values: number[], q: number): number {
  if (values.length === 0) return 0;
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.max(0, Math.ceil(q * values.length) - 1))]!;
}

interface Measured {
  ttftMs: number;
  residenceMs: number;
  bulkUnitsPerSecond: number;
}

/** One grid point: `n` Poisson real-time arrivals at `rate` req/s, optionally over a bulk backlog. */
function measure(input: Required<CurveInput>, rate: number, n: number, bulkFeed: number, seed: number): Measured {
  const next = rng(seed);
  const rt: TraceRequest[] = [];
  let t = 0;
  const offset = Math.floor(next() * input.mix.length);
  for (let i = 0; i < n; i++) {
    t += (-Math.log(1 - next()) / rate) * 1000;
    const shape = input.mix[(offset + i) % input.mix.length]!;
    rt.push({ arrivalMs: t, promptTokens: shape.promptTokens, outputTokens: shape.outputTokens, priority: 0 });
  }
  const windowMs = t;
  const warmupMs = Math.min(60_000, windowMs * 0.1);
  const bulk: TraceRequest[] = [];
  if (bulkFeed > 0) {
    // Fed faster than the engine can take (bulkFeed units/s above its saturated rate), from t = 0.
    const gapMs = (units(input.bulk) / bulkFeed) * 1000;
    const { promptTokens, outputTokens } = input.bulk;
    for (let at = 0; at < windowMs; at += gapMs) bulk.push({ arrivalMs: at, promptTokens, outputTokens, priority: 1 });
  }
  const results = simulate([...rt, ...bulk], input.engine, input.calibration);
  const ttft: number[] = [];
  let residence = 0;
  let counted = 0;
  rt.forEach((r, i) => {
    if (r.arrivalMs < warmupMs) return;
    const res = results[i]!;
    ttft.push(res.ttftMs);
    residence += res.finishMs - r.arrivalMs;
    counted++;
  });
  let bulkUnits = 0;
  for (let i = 0; i < bulk.length; i++) {
    const f = results[rt.length + i]!.finishMs;
    if (f >= warmupMs && f < windowMs) bulkUnits += units(input.bulk);
  }
  return {
    ttftMs: quantileOf(ttft, input.quantile),
    residenceMs: counted > 0 ? residence / counted : 0,
    bulkUnitsPerSecond: (bulkUnits * 1000) / Math.max(1, windowMs - warmupMs),
  };
}

/** Units/s of an engine given `count` requests of `shape` at once: the rate until 80 % of them finished. */
function saturated(input: Required<CurveInput>, shapes: readonly TokenShape[], count: number): number {
  const reqs = Array.from({ length: count }, (_, i) => {
    const { promptTokens, outputTokens } = shapes[i % shapes.length]!;
    return { arrivalMs: 0, promptTokens, outputTokens };
  });
  const res = simulate(reqs, input.engine, input.calibration);
  const order = res.map((r, i) => ({ at: r.finishMs, u: units(reqs[i]!) })).sort((a, b) => a.at - b.at);
  const upTo = Math.floor(order.length * 0.8);
  const done = order.slice(0, upTo).reduce((s, o) => s + o.u, 0);
  return (done * 1000) / order[upTo - 1]!.at;
}

export function buildEngineCurve(raw: CurveInput): EngineCurve {
  if (raw.mix.length === 0) throw new Error('the real-time mix is empty');
  const input: Required<CurveInput> = {
    calibration: LLAMA2_70B_H100,
    quantile: 0.99,
    points: 16,
    requestsPerPoint: 1500,
    seed: 1,
    ...raw,
  };
  const unitsPerRequest = input.mix.reduce((s, m) => s + units(m), 0) / input.mix.length;
  const rtSat = saturated(input, input.mix, Math.max(4 * input.engine.maxNumSeqs, 512));
  const bulkSat = saturated(input, [input.bulk], Math.max(8 * input.engine.maxNumSeqs, 512));
  const points: CurvePoint[] = [];
  for (let k = 0; k < input.points; k++) {
    // Denser toward saturation, where latency turns up.
    const share = 0.98 * (1 - (1 - (k + 1) / input.points) ** 1.5);
    const x = share * rtSat;
    const rate = x / unitsPerRequest;
    const alone = measure(input, rate, input.requestsPerPoint, 0, input.seed + k);
    const withBulk = measure(input, rate, input.requestsPerPoint, 1.5 * bulkSat, input.seed + k);
    points.push({
      rtUnitsPerSecond: x,
      aloneTtftMs: alone.ttftMs,
      aloneResidenceMs: alone.residenceMs,
      withBulkTtftMs: withBulk.ttftMs,
      withBulkResidenceMs: withBulk.residenceMs,
      bulkUnitsPerSecond: withBulk.bulkUnitsPerSecond,
    });
  }
  return {
    points: monotone([
      {
        rtUnitsPerSecond: 0,
        aloneTtftMs: points[0]?.aloneTtftMs ?? 0,
        aloneResidenceMs: points[0]?.aloneResidenceMs ?? 0,
        withBulkTtftMs: points[0]?.withBulkTtftMs ?? 0,
        withBulkResidenceMs: points[0]?.withBulkResidenceMs ?? 0,
        bulkUnitsPerSecond: bulkSat,
      },
      ...points,
    ]),
    rtSaturatedUnitsPerSecond: rtSat,
    bulkSaturatedUnitsPerSecond: bulkSat,
    unitsPerRequest,
    bulkUnitsPerRecord: units(input.bulk),
    quantile: input.quantile,
  };
}

function monotone(points: CurvePoint[]): CurvePoint[] {
  const out: CurvePoint[] = [];
  for (const p of points) {
    const prev = out.at(-1);
    out.push(
      prev === undefined
        ? p
        : {
            ...p,
            aloneTtftMs: Math.max(p.aloneTtftMs, prev.aloneTtftMs),
            aloneResidenceMs: Math.max(p.aloneResidenceMs, prev.aloneResidenceMs),
            withBulkTtftMs: Math.max(p.withBulkTtftMs, prev.withBulkTtftMs),
            withBulkResidenceMs: Math.max(p.withBulkResidenceMs, prev.withBulkResidenceMs),
            bulkUnitsPerSecond: Math.min(p.bulkUnitsPerSecond, prev.bulkUnitsPerSecond),
          },
    );
  }
  return out;
}

/** The curve at per-replica real-time load `x` (linear between grid points; the last point beyond). */
export function curveAt(curve: EngineCurve, x: number): CurvePoint {
  const pts = curve.points;
  if (x <= 0) return { ...pts[0]!, rtUnitsPerSecond: Math.max(0, x) };
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1]!;
    const b = pts[i]!;
    if (x <= b.rtUnitsPerSecond) {
      const f = (x - a.rtUnitsPerSecond) / (b.rtUnitsPerSecond - a.rtUnitsPerSecond);
      const lerp = (k: keyof CurvePoint): number => a[k] + f * (b[k] - a[k]);
      return {
        rtUnitsPerSecond: x,
        aloneTtftMs: lerp('aloneTtftMs'),
        aloneResidenceMs: lerp('aloneResidenceMs'),
        withBulkTtftMs: lerp('withBulkTtftMs'),
        withBulkResidenceMs: lerp('withBulkResidenceMs'),
        bulkUnitsPerSecond: lerp('bulkUnitsPerSecond'),
      };
    }
  }
  return { ...pts.at(-1)!, rtUnitsPerSecond: x };
}

/**
 * How long (ms) a replica's engine queue takes to settle into the curve's steady state at
 * per-replica load `x`. The curve's p99 is a steady state: Poisson arrivals at one rate for
 * thousands of requests, long enough for the queue inside the engine to reach its stationary
 * spread. A queue gets there over its relaxation time, which grows without bound toward
 * saturation: for M/M/1 it is 1 / (√μ − √λ)² (Morse 1955), and an M/M/c queue in heavy traffic
 * behaves like one server of rate cμ, so 1 / (cμ (1 − √ρ)²) with cμ the replica's saturated rate
 * in requests of the mix. At light load the queue is set by the requests in the engine, so it
 * turns over no faster than one unloaded residence. Both come from the measured curve; nothing
 * is fitted. Infinite at or above saturation (there is no steady state to reach).
 */
export function relaxationMs(curve: EngineCurve, x: number): number {
  const rho = Math.min(1, Math.max(0, x / curve.rtSaturatedUnitsPerSecond));
  const serviceRequestsPerMs = curve.rtSaturatedUnitsPerSecond / curve.unitsPerRequest / 1000;
  const heavyTraffic = 1 / (serviceRequestsPerMs * (1 - Math.sqrt(rho)) ** 2);
  return Math.max(curve.points[0]!.aloneResidenceMs, heavyTraffic);
}

/**
 * The per-replica load whose steady state the engine's queue shows, one step on: `settled` (where
 * it was) moved toward `rate` (the load now) as a first-order lag with the relaxation time at
 * `rate`, the time a queue takes to reach a new arrival rate's stationary state. A 10 s burst at
 * twice a moderate load moves it part of the way toward the burst's steady state (its relaxation
 * time is longer than the burst); a load held for several of its relaxation times reads as that
 * load's steady state. At or above saturation it does not move: there is no steady state, and
 * the pool model's backlog (arrivals above capacity) carries the overload's wait.
 */
export function settleLoad(curve: EngineCurve, settled: number, rate: number, stepMs: number): number {
  return settled + (rate - settled) * (1 - Math.exp(-stepMs / relaxationMs(curve, rate)));
}
