/**
 * The scheduler's single-leader lease in Redis, with a fencing token. Whoever
 * takes a free lease bumps the epoch counter; the lease value is
 * `<candidate>:<epoch>`. The holder renews before the TTL runs out; when it
 * dies, a standby takes over within one TTL. Every effect the leader applies
 * carries its epoch, and the resource rejects epochs lower than one it has
 * seen (see fenced-writes.ts), so a paused ex-leader cannot act on stale views.
 */
import type { RedisClient } from '../common/redis.ts';
import { leaderKeys } from '../common/topology.ts';

/*
 * KEYS[1] lease key, KEYS[2] epoch counter
 * ARGV[1] candidate id, ARGV[2] ttl ms
 * Returns the epoch held by this candidate after the call, or 0 if another holds it.
 */
const ACQUIRE_OR_RENEW = `
local holder = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. ':'
if holder == false then
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], mine .. epoch, 'PX', ARGV[2])
  return epoch
end
if string.sub(holder, 1, #mine) == mine then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(holder, #mine + 1))
end
return 0
`;

/*
 * KEYS[1] lease key; ARGV[1] the exact lease value to release.
 */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export class LeaderLease {
  private readonly keys: { lease: string; epoch: string };
  private epoch = 0;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    readonly candidateId: string,
    private readonly ttlMs: number,
  ) {
    this.keys = leaderKeys(prefix);
  }

  /** Takes the lease if free, renews it if ours. Returns our epoch, or 0 when another leads. */
  async tryAcquire(): Promise<number> {
    const result = await this.redis.eval(
      ACQUIRE_OR_RENEW,
      2,
      this.keys.lease,
      this.keys.epoch,
      this.candidateId,
      this.ttlMs,
    );
    this.epoch = Number(result);
    return this.epoch;
  }

  get heldEpoch(): number {
    return this.epoch;
  }

  /** Who holds the lease now (`<candidate>:<epoch>`), if anyone. */
  async holder(): Promise<string | null> {
    return this.redis.get(this.keys.lease);
  }

  /** Gives the lease up at once so a standby need not wait out the TTL. */
  async release(): Promise<void> {
    if (this.epoch === 0) return;
    await this.redis.eval(RELEASE, 1, this.keys.lease, `${this.candidateId}:${this.epoch}`);
    this.epoch = 0;
  }
}
