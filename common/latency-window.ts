/**
 * Recent latencies as a histogram over a sliding window: what a worker
 * reports in its heartbeat and what the scheduler's bulk-budget controller
 * reads. Histograms, not percentiles, travel: percentiles of several workers
 * cannot be combined, bucket counts can (add them), and the quantile is taken
 * once over the pool.
 *
 * Buckets are log-spaced by 1.25 from 1 ms to ~56 s (50 bounds plus an
 * overflow bucket), so a quantile read back is within 25 % of the truth
 * before interpolation: fine enough to steer around an objective of a few
 * hundred milliseconds, small enough (51 integers) to ride in a heartbeat.
 * Prometheus histograms (gpu-worker/metrics.ts) stay the long-term record;
 * they are cumulative since start, so they cannot say what the last ten
 * seconds looked like.
 */

/** Upper bounds (ms) of the buckets; counts have one more slot for anything above the last. */
export const windowBoundsMs: readonly number[] = Array.from({ length: 50 }, (_, i) => 1.25 ** i);

/** Index of the bucket holding `ms` (binary search over the bounds). */
export function bucketOf(ms: number): number {
  let lo = 0;
  let hi = windowBoundsMs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ms <= windowBoundsMs[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Bucket `b`'s range (lower, upper] in ms; the overflow bucket's upper end is Infinity. */
const bucketRange = (b: number): [number, number] => [
  b === 0 ? 0 : windowBoundsMs[b - 1]!,
  b < windowBoundsMs.length ? windowBoundsMs[b]! : Number.POSITIVE_INFINITY,
];

export const emptyCounts = (): number[] => new Array<number>(windowBoundsMs.length + 1).fill(0);

/**
 * A window of `windowMs`, kept as `slices` rotating sub-histograms: a sample
 * ages out within one slice's width of leaving the window, and recording is
 * one increment.
 */
export class LatencyWindow {
  private readonly sliceMs: number;
  private readonly slices: number[][];
  /** Start time (ms) of the slice each entry holds; a slice older than the window is stale. */
  private readonly sliceStart: number[];

  constructor(
    readonly windowMs: number,
    slices = 5,
  ) {
    this.sliceMs = Math.max(1, Math.ceil(windowMs / slices));
    this.slices = Array.from({ length: slices }, emptyCounts);
    this.sliceStart = new Array<number>(slices).fill(Number.NEGATIVE_INFINITY);
  }

  record(ms: number, now: number): void {
    const start = now - (now % this.sliceMs);
    const i = Math.floor(start / this.sliceMs) % this.slices.length;
    if (this.sliceStart[i] !== start) {
      this.slices[i]!.fill(0);
      this.sliceStart[i] = start;
    }
    this.slices[i]![bucketOf(ms)]!++;
  }

  /** Counts per bucket over the slices still inside the window at `now`. */
  counts(now: number): number[] {
    const out = emptyCounts();
    const oldest = now - this.sliceMs * this.slices.length;
    this.slices.forEach((slice, i) => {
      if (this.sliceStart[i]! <= oldest) return;
      for (let b = 0; b < out.length; b++) out[b]! += slice[b]!;
    });
    return out;
  }
}

/** Adds histograms bucket by bucket (the pool's view from its workers'). */
export function mergeCounts(all: readonly (readonly number[])[]): number[] {
  const out = emptyCounts();
  for (const counts of all) for (let b = 0; b < out.length && b < counts.length; b++) out[b]! += counts[b]!;
  return out;
}

export const totalCount = (counts: readonly number[]): number => counts.reduce((a, b) => a + b, 0);

/**
 * The q-quantile (0 < q ≤ 1) in ms, interpolated linearly inside its bucket;
 * undefined when there are no samples. A quantile in the overflow bucket
 * reads as twice the last bound: "far above anything an objective names".
 */
export function quantileMs(counts: readonly number[], q: number): number | undefined {
  const total = totalCount(counts);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let b = 0; b < counts.length; b++) {
    const n = counts[b]!;
    if (n === 0 || seen + n < rank) {
      seen += n;
      continue;
    }
    if (b === windowBoundsMs.length) return windowBoundsMs.at(-1)! * 2;
    const [lower, upper] = bucketRange(b);
    return lower + ((upper - lower) * (rank - seen)) / n;
  }
  return windowBoundsMs.at(-1)! * 2;
}

/**
 * How many samples lie above `ms`; the bucket holding `ms` counts in proportion (its samples
 * spread evenly inside it, as quantileMs assumes), the overflow bucket in full.
 */
export function countAboveMs(counts: readonly number[], ms: number): number {
  let above = 0;
  for (let b = 0; b < counts.length; b++) {
    const n = counts[b]!;
    if (n === 0) continue;
    const [lower, upper] = bucketRange(b);
    if (lower >= ms || upper === Number.POSITIVE_INFINITY) above += n;
    else if (upper > ms) above += (n * (upper - ms)) / (upper - lower);
  }
  return above;
}
