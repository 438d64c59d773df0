/**
 * What bench:autoscale-live measures on the live fleet, pure and in trace
 * time, so that it reads beside the replay's summary (common/autoscale/
 * replay/summary.ts):
 *
 * - replica-hours: the replicas that cost (the autoscaler's desired count:
 *   the local actuator starts or stops processes on each decision, and a
 *   stopped one no longer counts, as in the pool model) sampled over the run
 *   and integrated sample-and-hold;
 * - minutes within the objective: a trace minute with real-time traffic is
 *   within when the p99 (nearest rank) of the first-token times of the
 *   requests that arrived in it is at most the objective. A request refused
 *   or failed never had a first token: it counts as over. The replay's minute
 *   is the highest of its seconds' modelled p99s; with a few requests a
 *   second, a second's p99 is its slowest request, so both read the slow end
 *   of the minute's requests.
 */

export interface ReplicaSample {
  /** Trace ms from the segment's start. */
  at: number;
  desired: number;
  ready: number;
}

/** Replica-hours over [from, to) (trace ms), each sample holding until the next. */
export function replicaHours(samples: readonly ReplicaSample[], from: number, to: number): number {
  let ms = 0;
  for (let i = 0; i < samples.length; i++) {
    const start = Math.max(from, samples[i]!.at);
    const end = Math.min(to, samples[i + 1]?.at ?? to);
    if (end > start) ms += (end - start) * samples[i]!.desired;
  }
  return ms / 3_600_000;
}

export interface LiveRequest {
  /** Trace ms of its (scheduled) arrival from the segment's start. */
  arrivalMs: number;
  /** Trace ms from sending to its first content token; undefined: none came (refused, failed). */
  firstTokenMs: number | undefined;
}

export interface MinuteAttainment {
  /** Per minute: p99 first token (trace ms), Infinity with a request that had none, NaN: no traffic. */
  p99: number[];
  minutes: number;
  within: number;
  share: number;
}

/** Nearest-rank quantile of ascending values. */
function nearestRank(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function minuteAttainment(
  requests: readonly LiveRequest[],
  totalMinutes: number,
  objectiveMs: number,
  quantile = 0.99,
): MinuteAttainment {
  const byMinute: number[][] = Array.from({ length: totalMinutes }, () => []);
  for (const r of requests) {
    const m = Math.floor(r.arrivalMs / 60_000);
    if (m < 0 || m >= totalMinutes) continue;
    byMinute[m]!.push(r.firstTokenMs ?? Number.POSITIVE_INFINITY);
  }
  const p99 = byMinute.map((v) =>
    v.length === 0
      ? Number.NaN
      : nearestRank(
          [...v].sort((a, b) => a - b),
          quantile,
        ),
  );
  const counted = p99.filter((x) => !Number.isNaN(x));
  const within = counted.filter((x) => x <= objectiveMs).length;
  return { p99, minutes: counted.length, within, share: counted.length > 0 ? within / counted.length : 1 };
}

/**
 * Start-ups seen in the samples: each rise of `desired` to D, until `ready` reaches D (trace ms);
 * rises overtaken by a fall before they were ready are left out.
 */
export function startupTimes(samples: readonly ReplicaSample[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const target = samples[i]!.desired;
    if (target <= samples[i - 1]!.desired) continue;
    for (let j = i; j < samples.length; j++) {
      if (samples[j]!.desired < target) break;
      if (samples[j]!.ready >= target) {
        out.push(samples[j]!.at - samples[i]!.at);
        break;
      }
    }
  }
  return out;
}

/** Within ±tolerance of the reference (a ratio live ÷ replay). */
export const withinTolerance = (live: number, replay: number, tolerance: number): boolean =>
  replay === 0 ? live === 0 : Math.abs(live / replay - 1) <= tolerance;
