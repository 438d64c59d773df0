/** The reply writer against real Redis: order per inbox, coalescing, expiry. */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ReplyWriter } from '../../../gpu-worker/reply-writer.ts';
import { REDIS_URL } from '../../helpers/fleet.ts';

const redis = new Redis(REDIS_URL);
const inbox = `t-${randomUUID()}:{inbox.x}`;
afterAll(async () => {
  await redis.del(inbox);
  redis.disconnect();
});

describe('ReplyWriter', () => {
  it('keeps order and coalesces pushes made while one is in flight', async () => {
    const writer = new ReplyWriter(redis, 5000);
    const pipelines = vi.spyOn(redis, 'pipeline');
    const sent = Array.from({ length: 50 }, (_, n) => writer.send(inbox, { i: 'r', k: 'delta', text: String(n) }));
    await Promise.all(sent);
    const stored = (await redis.lrange(inbox, 0, -1)).map((raw) => (JSON.parse(raw) as { text: string }).text);
    expect(stored).toEqual(Array.from({ length: 50 }, (_, n) => String(n)));
    const ttl = await redis.pttl(inbox);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5000);
    // The first reply leaves at once; the 49 queued behind it leave together.
    expect(pipelines).toHaveBeenCalledTimes(2);
  });
});
