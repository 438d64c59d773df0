/** The preemption protocol on a real Redis: exactly `count` claims succeed fleet-wide, and tokens expire. */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimPreemption, preemptKeys, preemptMessageSchema, requestPreemption } from '../../common/preemption.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

let redis: Redis;
let sub: Redis;
const prefix = testConfig().redis.prefix;
beforeAll(() => {
  redis = new Redis(REDIS_URL);
  sub = new Redis(REDIS_URL);
});
afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
  sub.disconnect();
});

describe('preemption protocol', () => {
  it('publishes the request and lets exactly `count` chunks claim a token, however many workers try', async () => {
    const { channel, tokens } = preemptKeys(prefix, 'p');
    const heard = new Promise<string>((resolve) => sub.once('message', (_ch: string, msg: string) => resolve(msg)));
    await sub.subscribe(channel);
    await requestPreemption(redis, prefix, 'p', 3, 'objective_missed', 1234);
    expect(preemptMessageSchema.parse(JSON.parse(await heard))).toEqual({
      pool: 'p',
      count: 3,
      reason: 'objective_missed',
      at: 1234,
    });
    // Three workers with three running chunks each all try.
    const claims = await Promise.all(Array.from({ length: 9 }, () => claimPreemption(redis, prefix, 'p')));
    expect(claims.filter(Boolean)).toHaveLength(3);
    expect(await redis.pttl(tokens)).toBeGreaterThan(0);
  });

  it('claims nothing once the tokens expired or were never set, and leaves no key behind', async () => {
    expect(await claimPreemption(redis, prefix, 'quiet')).toBe(false);
    expect(await redis.exists(preemptKeys(prefix, 'quiet').tokens)).toBe(0);
    await requestPreemption(redis, prefix, 'q', 0, 'nothing');
    expect(await redis.exists(preemptKeys(prefix, 'q').tokens)).toBe(0);
  });
});
