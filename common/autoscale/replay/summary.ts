/**
 * What a replay reports per policy, from the pool model's per-second series:
 *
 * - replica-hours: replicas that cost (starting + ready) integrated over the
 *   replay; cost = replica-hours × pricePerReplicaHour;
 * - minutes within the objective: a minute with real-time traffic is within
 *   when its modelled first-token p99 (the highest per-second p99 of the
 *   minute) is at most the objective; minutes without real-time traffic are
 *   not counted;
 * - ramp minutes: minutes where the trace's real-time load of the last five
 *   minutes is more than RAMP_RISE above that of the five minutes before
 *   (minutes before the trace count as its first minute: the replay starts
 *   warm); "ramp minutes over" are those over the objective;
 * - batch deadline misses: batches done after their deadline or not done.
 * Several runs (two dedicated pools) sum their replicas; minutes and
 * batches come from whichever pool had them.
 */
import type { BatchOutcome, PoolRun, Workload } from './pool-model.ts';

/** A ramp: the last 5 minutes' load more than 10 % above the 5 minutes before. */
export const RAMP_RISE = 0.1;
export const RAMP_MINUTES = 5;

export interface ReplaySummary {
  policy: string;
  replicaHours: number;
  cost: number;
  /** Minutes with real-time traffic, and those within the objective. */
  minutes: number;
  minutesWithin: number;
  withinShare: number;
  rampMinutes: number;
  rampMinutesOver: number;
  batches: BatchOutcome[];
  lateBatches: number;
  peakReplicas: number;
  /** Highest minute p99 (ms); 0 without real-time traffic. */
  worstMinuteP99Ms: number;
}

/** Per minute: the real-time units arrived. */
function minuteLoads(workload: Workload): number[] {
  const minutes = Math.ceil(workload.seconds / 60);
  const out = new Array<number>(minutes).fill(0);
  workload.rtUnits.forEach((u, i) => {
    if (i < workload.seconds) out[Math.floor(i / 60)]! += u;
  });
  return out;
}

/** Which minutes are ramps (see RAMP_RISE). */
export function rampMinutes(workload: Workload): boolean[] {
  const loads = minuteLoads(workload);
  const first = loads[0] ?? 0;
  const at = (m: number): number => (m < 0 ? first : (loads[m] ?? 0));
  const sum = (end: number): number => {
    let s = 0;
    for (let m = end - RAMP_MINUTES + 1; m <= end; m++) s += at(m);
    return s;
  };
  return loads.map((_, m) => {
    const before = sum(m - RAMP_MINUTES);
    return before > 0 && sum(m) > (1 + RAMP_RISE) * before;
  });
}

/** Per minute: the modelled p99 (NaN: no real-time traffic that minute). */
export function minuteP99(runs: readonly PoolRun[], seconds: number): number[] {
  const minutes = Math.ceil(seconds / 60);
  const out = new Array<number>(minutes).fill(Number.NaN);
  for (const run of runs) {
    run.series.ttftMs.forEach((ms, i) => {
      if (!Number.isFinite(ms)) return;
      const m = Math.floor(i / 60);
      out[m] = Number.isFinite(out[m]!) ? Math.max(out[m]!, ms) : ms;
    });
  }
  return out;
}

export function summarize(
  policy: string,
  runs: readonly PoolRun[],
  workload: Workload,
  objectiveMs: number,
  pricePerReplicaHour: number,
): ReplaySummary {
  let replicaSeconds = 0;
  const total = new Array<number>(workload.seconds).fill(0);
  for (const run of runs) {
    run.series.replicas.forEach((n, i) => {
      replicaSeconds += n;
      total[i]! += n;
    });
  }
  const p99 = minuteP99(runs, workload.seconds);
  const ramps = rampMinutes(workload);
  let minutes = 0;
  let within = 0;
  let rampN = 0;
  let rampOver = 0;
  let worst = 0;
  p99.forEach((ms, m) => {
    if (!Number.isFinite(ms)) return;
    minutes++;
    worst = Math.max(worst, ms);
    const ok = ms <= objectiveMs;
    if (ok) within++;
    if (ramps[m]) {
      rampN++;
      if (!ok) rampOver++;
    }
  });
  const batches = runs.flatMap((r) => r.batches);
  const replicaHours = replicaSeconds / 3600;
  return {
    policy,
    replicaHours,
    cost: replicaHours * pricePerReplicaHour,
    minutes,
    minutesWithin: within,
    withinShare: minutes > 0 ? within / minutes : 1,
    rampMinutes: rampN,
    rampMinutesOver: rampOver,
    batches,
    lateBatches: batches.filter((b) => b.late).length,
    peakReplicas: Math.max(0, ...total),
    worstMinuteP99Ms: worst,
  };
}
