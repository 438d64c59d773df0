/**
 * The replay of issue 12: a (shaped) real-time trace plus batches with
 * deadlines through the pool model (pool-model.ts), under interfleet's
 * decide() and the four baselines, in one run:
 *
 *   (a) keda-wait:  KEDA/HPA as users run it today: a trigger per queue on
 *                   BullMQ's `wait` list only (bulk chunks, prioritized, are
 *                   invisible), HPA's default behaviour;
 *   (b) keda-all:   the same on every state that holds work;
 *   (c) static:     the smallest fixed count that meets the objective
 *                   (≥ 99 % of minutes) and every deadline, found by trying
 *                   each count from 1 up (maxReplicas if none does);
 *   (d) dedicated:  a real-time pool and a batch pool (minReplicaCount 0), each
 *                   autoscaled as in (b); replica-hours summed.
 *
 * The baselines' targets are what a fair user would set: real-time, a
 * replica's in-flight requests at `targetUtilization` of its saturated
 * real-time capacity (Little's law on the engine curve: rate × time in the
 * engine at that load); bulk, a replica's bulk chunk slots (jobs it runs at
 * once). Every autoscaled policy starts warm, with the replicas the first
 * minute's load needs at that utilisation, ready.
 *
 * replayPolicy() runs one scaler over a workload and returns its run and
 * summary (for a later live-vs-replay comparison).
 */
import type { ResolvedPolicy } from '../policy.ts';
import type { BatchSet } from './batches.ts';
import { buildEngineCurve, curveAt, type CurveInput, type EngineCurve } from './engine-curve.ts';
import { runPool, type PoolModelOptions, type PoolRun, type Scaler, type Workload } from './pool-model.ts';
import { DecideScaler, KedaHpaScaler, StaticScaler } from './scalers.ts';
import { summarize, type ReplaySummary } from './summary.ts';
import type { TraceRequest } from './trace.ts';

/** Epoch of second 0 for traces without timestamps (the generic form). */
export const DEFAULT_EPOCH_MS = Date.UTC(2024, 0, 1);

/** Per-second arrivals of a trace and the batches; runs to the later of the trace's end and the last deadline, plus a minute. */
export function buildWorkload(
  requests: readonly TraceRequest[],
  batchSet: BatchSet,
  epochMs = DEFAULT_EPOCH_MS,
): Workload {
  const lastArrival = requests.at(-1)?.arrivalMs ?? 0;
  const lastDeadline = Math.max(0, ...batchSet.batches.map((b) => b.deadlineMs));
  const seconds = Math.ceil(Math.max(lastArrival, lastDeadline) / 60_000) * 60 + 60;
  const rtUnits = new Array<number>(seconds).fill(0);
  const rtRequests = new Array<number>(seconds).fill(0);
  for (const r of requests) {
    const i = Math.floor(r.arrivalMs / 1000);
    rtUnits[i]! += r.promptTokens + r.outputTokens;
    rtRequests[i]! += 1;
  }
  return {
    rtUnits,
    rtRequests,
    batches: batchSet.batches,
    bulkUnitsPerRecord: batchSet.record.promptTokens + batchSet.record.outputTokens,
    seconds,
    epochMs,
  };
}

export interface ReplayResult {
  run: PoolRun;
  summary: ReplaySummary;
}

/** One scaler over one workload: the pool model's run and its summary. */
export function replayPolicy(
  workload: Workload,
  scaler: Scaler,
  model: PoolModelOptions,
  pricePerReplicaHour = 0,
): ReplayResult {
  const run = runPool(workload, scaler, model);
  return { run, summary: summarize(scaler.name, [run], workload, model.objectiveMs, pricePerReplicaHour) };
}

/** The fair baseline targets (jobs per replica) for a policy on an engine curve. */
export function baselineTargets(
  curve: EngineCurve,
  policy: ResolvedPolicy,
  bulkSlotsPerReplica = 1,
): { rt: number; bulk: number; rtUnitsPerSecond: number; residenceMs: number } {
  const x = policy.realtime.targetUtilization * policy.capacityHint;
  const residenceMs = curveAt(curve, x).aloneResidenceMs;
  const rt = Math.max(1, Math.round(((x / curve.unitsPerRequest) * residenceMs) / 1000));
  return { rt, bulk: bulkSlotsPerReplica, rtUnitsPerSecond: x, residenceMs };
}

export interface ComparisonInput {
  workload: Workload;
  policy: ResolvedPolicy;
  curve: EngineCurve;
  pool?: string;
  /** Pool-model settings besides the curve, objective and start-up (from the policy). */
  model?: Omit<PoolModelOptions, 'curve' | 'objectiveMs' | 'startupMs' | 'onProgress'>;
  /** (share done 0..1, what runs now) */
  onProgress?: (done: number, what: string) => void;
}

export interface PolicyResult {
  key: 'interfleet' | 'a' | 'b' | 'c' | 'd';
  label: string;
  summary: ReplaySummary;
  runs: PoolRun[];
}

export interface Comparison {
  results: PolicyResult[];
  targets: ReturnType<typeof baselineTargets>;
  staticReplicas: number;
  initialReplicas: number;
}

/** Warm start: the replicas the first minute's real-time load needs at targetUtilization. */
export function warmReplicas(workload: Workload, curve: EngineCurve, policy: ResolvedPolicy): number {
  const firstMinute = workload.rtUnits.slice(0, 60).reduce((a, b) => a + b, 0) / 60;
  const per = policy.realtime.targetUtilization * policy.capacityHint;
  const n = Math.ceil(firstMinute / per - 1e-9);
  return Math.min(policy.maxReplicas, Math.max(1, policy.minReplicas, n));
}

export function compareAll(input: ComparisonInput): Comparison {
  const { workload, policy, curve } = input;
  const price = policy.cost.pricePerReplicaHour;
  const objectiveMs = policy.realtime.objectiveMs;
  const targets = baselineTargets(curve, policy, input.model?.bulkSlotsPerReplica ?? 1);
  const n0 = warmReplicas(workload, curve, policy);
  const base: PoolModelOptions = {
    ...input.model,
    pool: input.pool ?? 'pool',
    curve,
    objectiveMs,
    startupMs: policy.startupMs,
  };
  // Progress: 4 autoscaled runs (d counts as one) plus the static search, weighted as 4 + 1.
  let stage = 0;
  const stages = 5;
  const progress = (what: string) => (f: number) => input.onProgress?.((stage + f) / stages, what);
  const run = (w: Workload, s: Scaler, what: string): PoolRun => {
    const r = runPool(w, s, { ...base, onProgress: progress(what) });
    return r;
  };
  const minFloor = Math.max(1, policy.minReplicas);
  const keda = (metric: 'wait' | 'all', t: { rt?: number; bulk?: number }, min: number, n: number, name: string) =>
    new KedaHpaScaler(name, { metric, targets: t, minReplicas: min, maxReplicas: policy.maxReplicas }, n);
  const results: PolicyResult[] = [];
  const add = (key: PolicyResult['key'], label: string, runs: PoolRun[], w: Workload = workload): void => {
    results.push({ key, label, runs, summary: summarize(label, runs, w, objectiveMs, price) });
  };

  add('interfleet', 'interfleet', [
    run(workload, new DecideScaler('interfleet', policy, n0, workload.epochMs), 'interfleet decide()'),
  ]);
  stage++;
  add('a', '(a) keda wait', [
    run(workload, keda('wait', { rt: targets.rt, bulk: targets.bulk }, minFloor, n0, '(a)'), '(a) keda on wait'),
  ]);
  stage++;
  add('b', '(b) keda all states', [
    run(workload, keda('all', { rt: targets.rt, bulk: targets.bulk }, minFloor, n0, '(b)'), '(b) keda on all states'),
  ]);
  stage++;
  const rtOnly: Workload = { ...workload, batches: [] };
  const bulkOnly: Workload = {
    ...workload,
    rtUnits: workload.rtUnits.map(() => 0),
    rtRequests: workload.rtRequests.map(() => 0),
  };
  add('d', '(d) dedicated pools', [
    run(rtOnly, keda('all', { rt: targets.rt }, minFloor, n0, '(d) real-time pool'), '(d) real-time pool'),
    run(bulkOnly, keda('all', { bulk: targets.bulk }, 0, 0, '(d) batch pool'), '(d) batch pool'),
  ]);
  stage++;

  // (c): the smallest fixed count that meets the objective and every deadline.
  let chosen: PolicyResult | undefined;
  for (let n = 1; n <= policy.maxReplicas; n++) {
    const r = runPool(workload, new StaticScaler(`static ${n}`, n), {
      ...base,
      onProgress: (f) => input.onProgress?.((stage + (n - 1 + f) / policy.maxReplicas) / stages, `(c) static ${n}`),
    });
    const summary = summarize(`(c) static ${n}`, [r], workload, objectiveMs, price);
    chosen = { key: 'c', label: `(c) static ${n}`, runs: [r], summary };
    if (summary.withinShare >= 0.99 && summary.lateBatches === 0) break;
  }
  results.splice(3, 0, chosen!);
  input.onProgress?.(1, 'done');
  return { results, targets, staticReplicas: chosen!.runs[0]!.series.replicas[0] ?? 0, initialReplicas: n0 };
}

/** The engine curve for a trace's token mix and a bulk record shape (a few seconds on the sim model). */
export function curveFor(
  requests: readonly TraceRequest[],
  batchSet: BatchSet,
  options: Partial<Omit<CurveInput, 'mix' | 'bulk'>> = {},
): EngineCurve {
  return buildEngineCurve({
    engine: { maxNumSeqs: 256, maxNumBatchedTokens: 2048, chunkedPrefill: true },
    ...options,
    mix: requests,
    bulk: batchSet.record,
  });
}
