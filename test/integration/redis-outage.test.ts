/**
 * A Redis outage answers 503 with Retry-After within a second, never a hang,
 * and the fleet serves again once Redis is back. Runs on a private
 * redis-server so the shared one is never touched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRedis, type LocalRedis } from '../../launcher/local-redis.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

let redis: LocalRedis;
let fleet: TestFleet;

beforeAll(async () => {
  // Port 1 never answers, so ensureRedis starts a private server on a free port.
  redis = await ensureRedis('redis://127.0.0.1:1');
  fleet = await startFleet({ yaml: 'pools:\n  - name: p\n    backend: echo\n', env: { REDIS_URL: redis.url } });
});
afterAll(async () => {
  await fleet.stop().catch(() => undefined);
  await redis.stop?.();
});

const infer = () =>
  fetch(`${fleet.producer.url}/v1/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'p', input: { task: 'sentiment', text: 'fine' } }),
  });

describe('Redis outage', () => {
  it('serves, answers 503 + Retry-After within 1 s while Redis is down', async () => {
    expect((await infer()).status).toBe(200);
    await redis.stop!();

    const started = Date.now();
    const res = await infer();
    const elapsed = Date.now() - started;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable');
    expect(elapsed).toBeLessThan(1000);

    const ready = await fetch(`${fleet.producer.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.headers.get('retry-after')).toBe('1');
  });
});
