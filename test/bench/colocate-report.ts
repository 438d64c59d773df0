/**
 * The figures bench:colocate prints per setup, from one run's raw outcome:
 * TTFT percentiles in model ms (with lower bounds where requests were still
 * unanswered), SLO attainment against the objective, bulk output tokens per
 * model second. Pure.
 */
import type { ReplayOutcome } from './colocate-replay.ts';

export interface TtftSummary {
  n: number;
  unanswered: number;
  errors: number;
  p50: number;
  p99: number;
  /** The percentile is a lower bound: an unanswered request's wait sits at or below it. */
  p50LowerBound: boolean;
  p99LowerBound: boolean;
}

/** Nearest-rank percentile over (value, lower-bound) pairs sorted by value. */
function pick(sorted: ReadonlyArray<{ v: number; lb: boolean }>, p: number): { v: number; lb: boolean } {
  if (sorted.length === 0) return { v: Number.NaN, lb: false };
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  const v = sorted[i]!.v;
  // The true values of lower bounds are larger; the percentile is exact only if none sits at or below it.
  const lb = sorted.some((s, j) => s.lb && j <= i);
  return { v, lb };
}

export function summarizeTtft(o: ReplayOutcome): TtftSummary {
  const pairs = Array.from(o.ttftMs, (v, i) => ({ v, lb: o.unfinished[i] === 1 })).sort((a, b) => a.v - b.v);
  const p50 = pick(pairs, 50);
  const p99 = pick(pairs, 99);
  return {
    n: pairs.length,
    unanswered: pairs.filter((p) => p.lb).length,
    errors: o.errors,
    p50: p50.v,
    p99: p99.v,
    p50LowerBound: p50.lb,
    p99LowerBound: p99.lb,
  };
}

/** Share of requests whose first token came within the objective (unanswered ones count as misses). */
export function shareWithin(o: ReplayOutcome, objectiveMs: number): number {
  let ok = 0;
  for (let i = 0; i < o.ttftMs.length; i++) if (o.unfinished[i] === 0 && o.ttftMs[i]! <= objectiveMs) ok++;
  return o.ttftMs.length === 0 ? Number.NaN : ok / o.ttftMs.length;
}

export interface Verdict {
  meetsObjective: boolean;
  keeps80: boolean;
  /** Per baseline: better on at least one axis and worse on neither. */
  dominates: Record<string, boolean>;
}

export interface Point {
  p99: number;
  bulkRel: number;
}

export function verdict(d: Point, objectiveMs: number, baselines: Record<string, Point>): Verdict {
  const dominates: Record<string, boolean> = {};
  for (const [name, b] of Object.entries(baselines)) {
    const notWorse = d.p99 <= b.p99 && d.bulkRel >= b.bulkRel;
    dominates[name] = notWorse && (d.p99 < b.p99 || d.bulkRel > b.bulkRel);
  }
  return { meetsObjective: d.p99 <= objectiveMs, keeps80: d.bulkRel >= 0.8, dominates };
}
