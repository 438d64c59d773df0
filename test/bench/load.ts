/**
 * Load generators. Latency is measured per successful request with the
 * monotonic clock, in milliseconds; failed requests are counted, not timed.
 * - `closedLoop`: `concurrency` callers, each sending its next request as
 *   soon as the previous one answered (throughput-bound: by Little's law the
 *   mean latency is concurrency / throughput once the system saturates).
 * - `paced`: an open loop at a fixed rate with at most `maxInFlight`
 *   requests outstanding: latency under a given load, not at saturation.
 * Both stop after `total` requests or `maxMs`, whichever comes first.
 */
import { summarize, type RunStats } from './stats.ts';

export type Call = () => Promise<void>;

export interface LoadResult {
  stats: RunStats;
  /** The first error seen, to print when a run failed. */
  firstError: unknown;
}

class Recorder {
  readonly latencies: Float64Array;
  ok = 0;
  errors = 0;
  firstError: unknown;
  readonly start = performance.now();

  constructor(total: number) {
    this.latencies = new Float64Array(total);
  }

  async time(call: Call): Promise<void> {
    const t0 = performance.now();
    try {
      await call();
      this.latencies[this.ok++] = performance.now() - t0;
    } catch (err) {
      this.errors++;
      this.firstError ??= err;
    }
  }

  result(truncated: boolean): LoadResult {
    const elapsed = performance.now() - this.start;
    return {
      stats: summarize(this.latencies.subarray(0, this.ok), this.errors, elapsed, truncated),
      firstError: this.firstError,
    };
  }
}

export async function closedLoop(call: Call, total: number, concurrency: number, maxMs: number): Promise<LoadResult> {
  const rec = new Recorder(total);
  const until = rec.start + maxMs;
  let issued = 0;
  let truncated = false;
  const caller = async (): Promise<void> => {
    while (issued < total) {
      if (performance.now() >= until) {
        truncated = true;
        return;
      }
      issued++;
      await rec.time(call);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, caller));
  return rec.result(truncated);
}

export async function paced(
  call: Call,
  total: number,
  ratePerS: number,
  maxInFlight: number,
  maxMs: number,
): Promise<LoadResult> {
  const rec = new Recorder(total);
  const interval = 1000 / ratePerS;
  let issued = 0;
  let inFlight = 0;
  let truncated = false;
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      timer = undefined;
      const now = performance.now();
      if (now - rec.start >= maxMs && issued < total) {
        truncated = true;
        issued = total;
      }
      while (issued < total && inFlight < maxInFlight && rec.start + issued * interval <= now) {
        issued++;
        inFlight++;
        void rec.time(call).then(() => {
          inFlight--;
          if (issued >= total && inFlight === 0) resolve();
          else if (timer === undefined) pump();
        });
      }
      if (issued >= total) {
        if (inFlight === 0) resolve();
        return;
      }
      // At the in-flight limit the next completion pumps; otherwise wake at the next due time.
      if (inFlight < maxInFlight) timer = setTimeout(pump, Math.max(0, rec.start + issued * interval - now));
    };
    pump();
  });
  return rec.result(truncated);
}
