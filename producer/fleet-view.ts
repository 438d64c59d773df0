/** What the producer reads about the fleet: live workers per pool, from their heartbeats. */
import { liveWorkers, type Heartbeat } from '../common/contracts/heartbeat.ts';
import type { RedisClient } from '../common/redis.ts';
import { workersKey } from '../common/topology.ts';

export async function readLiveWorkers(
  redis: RedisClient,
  prefix: string,
  pools: readonly string[],
  now: number,
): Promise<Map<string, Heartbeat[]>> {
  const raws = await Promise.all(pools.map((pool) => redis.hgetall(workersKey(prefix, pool))));
  return new Map(pools.map((pool, i) => [pool, liveWorkers(raws[i] ?? {}, now)]));
}
