/**
 * Latency statistics for the benchmarks: nearest-rank percentiles over one
 * run's samples, and medians of each statistic over repetitions.
 */

export interface RunStats {
  /** Requests that completed (successfully or not) in the measured window. */
  n: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Completed requests per second of wall time. */
  rps: number;
  /** The run hit its time bound before its request count. */
  truncated: boolean;
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(latenciesMs: Float64Array, errors: number, elapsedMs: number, truncated: boolean): RunStats {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    n: sorted.length,
    errors,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
    rps: elapsedMs > 0 ? (sorted.length / elapsedMs) * 1000 : Number.NaN,
    truncated,
  };
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** The median of each statistic over repetitions (each field on its own). */
export function medianStats(runs: readonly RunStats[]): RunStats {
  const m = (f: (r: RunStats) => number): number => median(runs.map(f));
  return {
    n: m((r) => r.n),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    p50: m((r) => r.p50),
    p90: m((r) => r.p90),
    p99: m((r) => r.p99),
    max: m((r) => r.max),
    rps: m((r) => r.rps),
    truncated: runs.some((r) => r.truncated),
  };
}

/** Milliseconds with a precision that suits the magnitude. */
export function fmtMs(ms: number): string {
  if (Number.isNaN(ms)) return '-';
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return ms.toFixed(0);
}

export function fmtInt(n: number): string {
  return Number.isNaN(n) ? '-' : Math.round(n).toLocaleString('en-US');
}

/** A plain-text table with right-aligned columns after the first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
