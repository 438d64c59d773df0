/**
 * bench:autoscale-live's set-up, pure: the policy and the sim replica in
 * trace time (what the replay runs), and the same compressed `compress`
 * times for the live fleet (what the launcher runs).
 *
 * Compression divides every duration the fleet's behaviour depends on — the
 * policy's (start-up, forecast window, stabilization windows and periods,
 * staleness, the objective), the autoscaler's pass, the workers' heartbeat
 * and latency window, the sim engine's time (timeScale) — and multiplies
 * every rate (the capacity hint, in units per second). The live fleet is then
 * the trace-time fleet run `compress` times faster, and its measurements
 * (wall ms × compress) read in trace time. decide() holds no duration of its
 * own that is not in the policy (its 10 s drain floor is below both start-ups),
 * so the two are the same decisions. What does not compress is the machine:
 * HTTP, Redis and process wake-ups cost the same wall ms, i.e. `compress`
 * times more trace ms.
 */
import { stringify } from 'yaml';
import type { AutoscalePolicy } from '../../common/autoscale/policy.ts';

/** The sim replica: a small engine, so that the trace's load spans a few replicas. */
export const LIVE_ENGINE = { maxNumSeqs: 8, maxNumBatchedTokens: 2048, chunkedPrefill: true } as const;

/** The real-time objective (p99 first token, trace ms). */
export const LIVE_OBJECTIVE_MS = 2500;

/** The policy in trace time, as an SRE would write it under pools[].autoscale. */
export const LIVE_POLICY = {
  minReplicas: 1,
  maxReplicas: 6,
  startupMs: 120_000,
  realtime: { objectiveMs: LIVE_OBJECTIVE_MS, targetUtilization: 0.5 },
  // ≈ the sim replica's saturated real-time rate on this trace's mix (the bench prints the engine
  // curve's: 978 units/s for minutes 0–45).
  capacityHint: 800,
} as const;

/** The fleet's own cadences in trace time (the config's defaults). */
export const TRACE_CADENCE = { autoscalerEveryMs: 5000, heartbeatMs: 2000, latencyWindowMs: 10_000 } as const;

const div = (ms: number, compress: number): number => Math.max(1, Math.round(ms / compress));

/** A parsed policy with every duration ÷ compress and the capacity hint × compress. */
export function compressPolicy(p: AutoscalePolicy, compress: number): AutoscalePolicy {
  if (!(compress > 0)) throw new Error(`compress must be above 0: ${compress}`);
  // A cron floor fires on the wall clock: it cannot be compressed.
  if (p.floors.length > 0) throw new Error('a policy with schedule floors cannot be time-compressed');
  const step = (s: AutoscalePolicy['scaleUp']): AutoscalePolicy['scaleUp'] => ({
    ...s,
    stabilizationMs: s.stabilizationMs === 0 ? 0 : div(s.stabilizationMs, compress),
    periodMs: div(s.periodMs, compress),
  });
  return {
    ...p,
    startupMs: div(p.startupMs, compress),
    realtime: {
      ...p.realtime,
      ...(p.realtime.objectiveMs === undefined ? {} : { objectiveMs: div(p.realtime.objectiveMs, compress) }),
      forecastWindowMs: Math.max(1000, div(p.realtime.forecastWindowMs, compress)),
    },
    capacityHint: p.capacityHint * compress,
    scaleUp: step(p.scaleUp),
    scaleDown: step(p.scaleDown),
    idleToZeroMs: div(p.idleToZeroMs, compress),
    staleAfterMs: div(p.staleAfterMs, compress),
  };
}

export interface LiveConfigInput {
  pool: string;
  /** The trace-time policy, parsed. */
  policy: AutoscalePolicy;
  compress: number;
  objectiveMs: number;
}

/**
 * The launcher's config (YAML) for the live run. The real-time lane takes as many requests as the
 * engine batches (maxNumSeqs), so that a backlog waits in BullMQ, where a replica that just became
 * ready can take it (the replay's model), not inside a busy replica's engine.
 */
export function liveConfigYaml({ pool, policy, compress, objectiveMs }: LiveConfigInput): string {
  const c = compress;
  const config = {
    log: { level: 'warn' },
    scheduler: { metricsPort: -1 },
    autoscaler: { everyMs: Math.max(100, div(TRACE_CADENCE.autoscalerEveryMs, c)) },
    worker: {
      heartbeatMs: Math.max(50, div(TRACE_CADENCE.heartbeatMs, c)),
      // Not compressed: a beat a loaded VM delays must not make a worker vanish (the replay has no beats).
      heartbeatTtlMs: 3000,
      latencyWindowMs: Math.max(100, div(TRACE_CADENCE.latencyWindowMs, c)),
      shutdownGraceMs: 10_000,
      metricsPort: -1,
    },
    producer: { defaultTimeoutMs: 120_000 },
    pools: [
      {
        name: pool,
        backend: 'sim',
        firstTokenObjectiveMs: div(objectiveMs, c),
        // Model time: timeScale compresses it (startupMs included).
        sim: { ...LIVE_ENGINE, timeScale: 1 / c, startupMs: policy.startupMs },
        lanes: { realtime: { concurrency: LIVE_ENGINE.maxNumSeqs }, bulk: { concurrency: 1 } },
        autoscale: compressPolicy(policy, c),
      },
    ],
  };
  return stringify(config);
}
