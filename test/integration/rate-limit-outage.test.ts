/**
 * With auth and per-tenant rate limits on, a Redis outage still answers 503
 * with Retry-After within a second: the limiter's count lives in Redis, and
 * when Redis does not answer it lets the request through (skipOnError) to the
 * route, which answers 503 itself, instead of hanging or answering 500.
 * Runs on a private redis-server so the shared one is never touched.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRedis, type LocalRedis } from '../../launcher/local-redis.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

const KEY = 'outage-key-0123456789abcdef';
let redis: LocalRedis;
let fleet: TestFleet;

beforeAll(async () => {
  // Port 1 never answers, so ensureRedis starts a private server on a free port.
  redis = await ensureRedis('redis://127.0.0.1:1');
  fleet = await startFleet({
    yaml: 'pools:\n  - name: p\n    backend: echo\n',
    env: {
      REDIS_URL: redis.url,
      INTERFLEET_API_KEYS: `keys: [{ id: t, key: ${KEY}, tenant: t, scopes: [infer] }]`,
    },
  });
});
afterAll(async () => {
  await fleet.stop().catch(() => undefined);
  await redis.stop?.();
});

const infer = () =>
  fetch(`${fleet.producer.url}/v1/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: 'p', input: { task: 'sentiment', text: 'fine' } }),
  });

describe('rate limits during a Redis outage', () => {
  it('counts in Redis while it answers, and answers 503 + Retry-After within 1 s while it is down', async () => {
    const ok = await infer();
    expect(ok.status).toBe(200);
    // The limiter ran: its headers and its counter under the fleet's prefix.
    expect(ok.headers.get('x-ratelimit-limit')).toBe('6000');
    const direct = new Redis(redis.url);
    expect(await direct.keys(`${fleet.prefix}:ratelimit:*`)).toEqual([`${fleet.prefix}:ratelimit:t`]);
    direct.disconnect();
    await redis.stop!();

    const started = Date.now();
    const res = await infer();
    const elapsed = Date.now() - started;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable');
    expect(elapsed).toBeLessThan(1000);
  });
});
