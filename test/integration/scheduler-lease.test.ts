/**
 * One active scheduler: the lease, takeover after the leader goes, fencing of
 * a stale leader's writes, and heartbeat bookkeeping by the leader.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { workersKey } from '../../common/topology.ts';
import { removeWorkers, StaleLeaderError } from '../../scheduler/fenced-writes.ts';
import { LeaderLease } from '../../scheduler/leader-lease.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

let redis: Redis;
const config = testConfig('scheduler:\n  leaseTtlMs: 300\n  renewEveryMs: 50\n');
const prefix = config.redis.prefix;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

describe('leader lease', () => {
  it('has one holder; a standby takes over after the TTL with a higher epoch', async () => {
    const a = new LeaderLease(redis, `${prefix}:l1`, 'a', 200);
    const b = new LeaderLease(redis, `${prefix}:l1`, 'b', 200);
    const first = await a.tryAcquire();
    expect(first).toBeGreaterThan(0);
    expect(await b.tryAcquire()).toBe(0);
    expect(await a.tryAcquire()).toBe(first); // renewal keeps the epoch
    await new Promise((r) => setTimeout(r, 300)); // a stops renewing: it "died"
    const second = await b.tryAcquire();
    expect(second).toBe(first + 1);
    expect(await a.tryAcquire()).toBe(0);
  });

  it('rejects the writes of a stale leader', async () => {
    const key = workersKey(prefix, 'fenced');
    await redis.hset(key, 'w1', '{}', 'w2', '{}');
    expect(await removeWorkers(redis, prefix, 'fenced', 2, ['w1'])).toBe(1);
    await expect(removeWorkers(redis, prefix, 'fenced', 1, ['w2'])).rejects.toBeInstanceOf(StaleLeaderError);
    expect(await redis.hkeys(key)).toEqual(['w2']);
  });
});

describe('scheduler role', () => {
  it('lets one replica lead, fails over on close, and removes expired heartbeats', async () => {
    const logger = silentLogger();
    const s1 = await startScheduler(config, { logger });
    const s2 = await startScheduler(config, { logger });
    expect([s1.epoch() > 0, s2.epoch() > 0].filter(Boolean)).toHaveLength(1);
    const [leader, standby] = s1.epoch() > 0 ? [s1, s2] : [s2, s1];

    const key = workersKey(prefix, config.pools[0]!.name);
    const dead = {
      workerId: 'dead',
      pool: 'default',
      host: 'h',
      pid: 1,
      backend: 'echo',
      lanes: [],
      state: 'ready',
      startedAt: 0,
      seenAt: 0,
      expiresAt: Date.now() - 1,
    };
    await redis.hset(key, 'dead', JSON.stringify(dead), 'garbage', 'not json');
    await leader.tick();
    expect(await redis.hkeys(key)).toEqual([]);

    const oldEpoch = leader.epoch();
    await leader.close(); // releases the lease: no need to wait out the TTL
    await standby.tick();
    expect(standby.epoch()).toBe(oldEpoch + 1);
    await standby.close();
  });
});
