/**
 * Effects of the leader, fenced by its epoch: each fenced resource keeps the
 * highest epoch that wrote to it (a key in the resource's own hash slot, so
 * this works on Redis Cluster) and refuses writes from lower ones.
 */
import type { RedisClient } from '../common/redis.ts';
import { workersKey } from '../common/topology.ts';

/*
 * KEYS[1] fence key, KEYS[2] workers hash
 * ARGV[1] epoch, ARGV[2..] worker ids to delete
 * Returns the number deleted, or -1 when the epoch is stale.
 */
const FENCED_HDEL = `
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < seen then return -1 end
if epoch > seen then redis.call('SET', KEYS[1], epoch) end
if #ARGV < 2 then return 0 end
return redis.call('HDEL', KEYS[2], unpack(ARGV, 2))
`;

export class StaleLeaderError extends Error {
  constructor(readonly epoch: number) {
    super(`epoch ${epoch} is older than the resource's; this scheduler is no longer the leader`);
    this.name = 'StaleLeaderError';
  }
}

export function fenceKey(prefix: string, pool: string): string {
  return `${workersKey(prefix, pool)}:fence`;
}

/** Removes dead workers' heartbeat entries, as leader of `epoch`. */
export async function removeWorkers(
  redis: RedisClient,
  prefix: string,
  pool: string,
  epoch: number,
  workerIds: readonly string[],
): Promise<number> {
  const result = Number(
    await redis.eval(FENCED_HDEL, 2, fenceKey(prefix, pool), workersKey(prefix, pool), epoch, ...workerIds),
  );
  if (result < 0) throw new StaleLeaderError(epoch);
  return result;
}
