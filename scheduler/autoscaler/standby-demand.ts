/**
 * What a standby scheduler serves to KEDA: the leader's last decision for a
 * pool, read from the leader's autoscale explain record in Redis. KEDA keeps
 * one long-lived gRPC connection to whichever scheduler replica a Service
 * gave it; a standby that refused would leave the pool unscaled for the life
 * of that connection.
 *
 * A record older than `maxAgeMs` is not served (UNAVAILABLE, and KEDA's HPA
 * holds the pool): the leader is gone and a new one has not decided yet.
 */
import { autoscaleExplanationSchema } from '../../common/contracts/explain.ts';
import type { RedisClient } from '../../common/redis.ts';
import { explainKey } from '../../common/topology.ts';
import type { PoolDemand } from './autoscale-loop.ts';

/** The demand a record serves at `now`, or undefined (no record, not parsable, nothing served, too old). */
export function demandFromRecord(raw: string | null, now: number, maxAgeMs: number): PoolDemand | undefined {
  if (raw === null) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = autoscaleExplanationSchema.safeParse(json);
  if (!parsed.success || !parsed.data.served) return undefined;
  if (now - parsed.data.at > maxAgeMs) return undefined;
  return { ...parsed.data.served };
}

/**
 * Reads a pool's served demand. Three passes of the leader's loop (at least 15 s) is fresh enough:
 * one missed pass is a slow Redis, not a dead leader.
 */
export function standbyDemand(deps: {
  redis: RedisClient;
  prefix: string;
  everyMs: number;
  now: () => number;
}): (pool: string) => Promise<PoolDemand | undefined> {
  const maxAgeMs = Math.max(3 * deps.everyMs, 15_000);
  return async (pool) =>
    demandFromRecord(await deps.redis.get(explainKey(deps.prefix, 'autoscale', pool)), deps.now(), maxAgeMs);
}
