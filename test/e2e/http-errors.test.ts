/**
 * Every error case of the real-time API through raw HTTP: status, OpenAI
 * error shape, the field named, Retry-After, and nothing left behind in Redis.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueName } from '../../common/topology.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

const yaml = `
producer:
  bodyLimitBytes: 4096
  depthRefreshMs: 20
pools:
  - name: echo
    backend: echo
  - name: idle
    backend: echo
    maxWaiting: 2
  - name: remote
    backend: openai
    baseUrl: http://127.0.0.1:9/v1
`;

let fleet: TestFleet;
let idleQueue: Queue;

beforeAll(async () => {
  // One worker, for pool `echo`; pool `idle` has none, so its requests wait.
  fleet = await startFleet({ yaml, env: { WORKER_POOL: 'echo' } });
  idleQueue = new Queue(queueName('rt', 'idle'), { connection: fleet.redis.duplicate(), prefix: fleet.prefix });
});
afterAll(async () => {
  await idleQueue.close();
  await fleet.stop();
});

function post(path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${fleet.producer.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'hello there' }],
  ...extra,
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bad input', () => {
  it.each([
    ['a wrong role', chat('echo', { messages: [{ role: 'wizard', content: 'x' }] }), 'messages.0.role'],
    ['no messages', { model: 'echo', messages: [] }, 'messages'],
    ['a temperature out of range', chat('echo', { temperature: 7 }), 'temperature'],
    ['no model', { messages: [{ role: 'user', content: 'x' }] }, 'model'],
    ['n > 1', chat('echo', { n: 3 }), 'n'],
  ])('400 names the field for %s', async (_name, body, param) => {
    const res = await post('/v1/chat/completions', body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { param: string; code: string; message: string; type: string } };
    expect(json.error).toMatchObject({ param, code: 'bad_request', type: 'invalid_request_error' });
    expect(json.error.message).toContain(param);
  });

  it('400 for invalid JSON', async () => {
    const res = await post('/v1/chat/completions', '{"model": ');
    expect(res.status).toBe(400);
  });

  it('400 for a task input that fails validation on /v1/infer', async () => {
    const res = await post('/v1/infer', { model: 'echo', input: { task: 'sentiment', text: '' } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe('input.text');
  });

  it('400 for a bad timeout header', async () => {
    const res = await post('/v1/chat/completions', chat('echo'), { 'x-interfleet-timeout-ms': 'soon' });
    expect(res.status).toBe(400);
  });

  it('413 before anything reaches Redis when the body is over the limit', async () => {
    const jobsInRedis = async () => (await fleet.redis.keys(`${fleet.prefix}:*`)).length;
    const before = await jobsInRedis();
    const res = await post(
      '/v1/chat/completions',
      chat('echo', { messages: [{ role: 'user', content: 'x'.repeat(8000) }] }),
    );
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
    expect(await jobsInRedis()).toBe(before);
  });

  it('404 for an unknown model', async () => {
    const res = await post('/v1/infer', { model: 'gpt-9', input: { task: 'sentiment', text: 'x' } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('model_not_found');
  });

  it('400 for a task the pool cannot run', async () => {
    const res = await post('/v1/infer', { model: 'remote', input: { task: 'sentiment', text: 'x' } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unsupported_task');
  });
});

describe('deadlines and overload', () => {
  it('504 at the deadline, and the waiting job is removed', async () => {
    const started = Date.now();
    const res = await post('/v1/infer', { model: 'idle', input: { task: 'sentiment', text: 'x' }, timeout_ms: 300 });
    expect(res.status).toBe(504);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('deadline_exceeded');
    await waitFor(async () => (await idleQueue.getWaitingCount()) === 0);
  });

  it('removes the job when the caller disconnects', async () => {
    const controller = new AbortController();
    const pending = post(
      '/v1/infer',
      { model: 'idle', input: { task: 'sentiment', text: 'x' } },
      {},
      controller.signal,
    );
    await waitFor(async () => (await idleQueue.getWaitingCount()) === 1);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(async () => (await idleQueue.getWaitingCount()) === 0);
  });

  it('429 with Retry-After when too many requests wait for a pool', async () => {
    const controller = new AbortController();
    const body = { model: 'idle', input: { task: 'sentiment', text: 'x' }, timeout_ms: 5000 };
    const waiting = [post('/v1/infer', body, {}, controller.signal), post('/v1/infer', body, {}, controller.signal)];
    await waitFor(async () => (await idleQueue.getWaitingCount()) === 2);
    const res = await post('/v1/infer', body);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { error: { code: string; type: string } }).error).toMatchObject({
      code: 'overloaded',
      type: 'rate_limit_error',
    });
    controller.abort();
    await Promise.allSettled(waiting);
    await waitFor(async () => (await idleQueue.getWaitingCount()) === 0);
  });
});

describe('operations surfaces', () => {
  it('serves Bull Board over the queues', async () => {
    const page = await fetch(`${fleet.producer.url}/admin/queues`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    const api = await fetch(`${fleet.producer.url}/admin/queues/api/queues?activeQueue=rt.echo&page=1&jobsPerPage=10`);
    expect(api.status).toBe(200);
    const { queues } = (await api.json()) as {
      queues: Array<{ name: string; displayName: string; readOnlyMode: boolean }>;
    };
    // Every queue of every pool, and the batch control queue.
    const pools = ['echo', 'idle', 'remote'];
    expect(queues.map((q) => q.displayName).sort()).toEqual(
      ['batch-control', ...['bulk', 'rt', 'train'].flatMap((k) => pools.map((p) => `${k}.${p}`))].sort(),
    );
    expect(queues.every((q) => q.readOnlyMode)).toBe(true);
  });

  it('exposes request metrics by pool and outcome', async () => {
    await post('/v1/infer', { model: 'echo', input: { task: 'sentiment', text: 'fine' } });
    const text = await (await fetch(`${fleet.producer.url}/metrics`)).text();
    expect(text).toMatch(/interfleet_realtime_latency_seconds_count\{[^}]*pool="echo"[^}]*outcome="done"[^}]*\} [1-9]/);
    expect(text).toContain('interfleet_queue_jobs{');
  });

  it('reports readiness per pool', async () => {
    const res = await fetch(`${fleet.producer.url}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { workers: Record<string, number>; reason: string };
    expect(body.workers).toEqual({ echo: 1, idle: 0, remote: 0 });
    expect(body.reason).toContain('idle');
    expect((await fetch(`${fleet.producer.url}/healthz`)).status).toBe(200);
  });
});
