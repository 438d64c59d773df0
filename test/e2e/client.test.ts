/**
 * The client SDK against the real producer and a real embedded-model worker:
 * typed results per task, streaming, and every error the API can answer
 * arriving as an InterfleetApiError with its code, status, param and
 * Retry-After. Pools `idle` and `full` have no worker, so their requests wait.
 */
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { parseConfig, type Config } from '../../common/config.ts';
import { silentLogger } from '../../common/logger.ts';
import { queueName } from '../../common/topology.ts';
import { startWorker, type RunningWorker } from '../../gpu-worker/worker.ts';
import {
  InterfleetApiError,
  InterfleetClient,
  isRetryable,
  type ChatOutput,
  type SentimentOutput,
  type SummarizeOutput,
} from '../../producer/client/index.ts';
import { startProducer, type RunningProducer } from '../../producer/server.ts';
import { deleteKeys, REDIS_URL } from '../helpers/fleet.ts';

const yaml = `
redis:
  maxReconnectDelayMs: 50
producer:
  depthRefreshMs: 20
worker:
  pool: tiny
  metricsPort: -1
pools:
  - name: tiny
    backend: embedded
  - name: idle
    backend: echo
  - name: full
    backend: echo
    maxWaiting: 1
`;

let config: Config;
let producer: RunningProducer;
let worker: RunningWorker;
let redis: Redis;
let client: InterfleetClient;
const logger = silentLogger();

beforeAll(async () => {
  config = parseConfig({ REDIS_URL, INTERFLEET_PREFIX: `t-client-${randomUUID()}` }, yaml);
  redis = new Redis(REDIS_URL);
  worker = await startWorker(config, { logger });
  producer = await startProducer(config, { logger, port: 0 });
  client = new InterfleetClient({ baseUrl: producer.url, timeoutMs: 10_000 });
});
afterAll(async () => {
  await producer?.close(0);
  await worker?.close(0);
  if (config) await deleteKeys(redis, config.redis.prefix);
  redis?.disconnect();
});

/** Awaits a rejection and returns it as an InterfleetApiError (fails otherwise). */
async function apiError(promise: Promise<unknown>): Promise<InterfleetApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InterfleetApiError);
  return err as InterfleetApiError;
}

const hello = [{ role: 'user' as const, content: 'Once upon a time' }];

describe('typed results', () => {
  it('lists the pools with their tasks and live workers', async () => {
    const models = await client.models();
    expect(models.map((m) => m.id)).toEqual(['tiny', 'idle', 'full']);
    expect(models[0]).toEqual({
      id: 'tiny',
      backend: 'embedded',
      tasks: ['chat', 'sentiment', 'summarize'],
      workers: 1,
    });
    expect(models[1]?.workers).toBe(0);
  });

  it('runs sentiment', async () => {
    const out = await client.sentiment('tiny', 'What a wonderful, happy day. I love it!');
    expectTypeOf(out).toEqualTypeOf<SentimentOutput>();
    expect(out).toMatchObject({ task: 'sentiment', label: 'positive' });
    expect(out.score).toBeGreaterThan(0);
  });

  it('runs summarize, keeping at most maxSentences', async () => {
    const text = 'The cat sat on the mat. It was a sunny day. The dog barked at the mailman. Then everyone had lunch.';
    const out = await client.summarize('tiny', text, { maxSentences: 2 });
    expectTypeOf(out).toEqualTypeOf<SummarizeOutput>();
    expect(out.task).toBe('summarize');
    expect(out.sentences.length).toBeLessThanOrEqual(2);
    expect(out.summary.length).toBeGreaterThan(0);
  });

  it('runs chat with generation parameters', async () => {
    const out = await client.chat('tiny', hello, { maxTokens: 8, seed: 1 });
    expectTypeOf(out).toEqualTypeOf<ChatOutput>();
    expect(out).toMatchObject({ task: 'chat', finishReason: 'length', usage: { completionTokens: 8 } });
    expect(out.text.length).toBeGreaterThan(0);
  });

  it('infer types the output by the input task and returns id and timings', async () => {
    const res = await client.infer('tiny', { task: 'sentiment', text: 'terrible, awful, sad' }, { timeoutMs: 5000 });
    expectTypeOf(res.output).toEqualTypeOf<SentimentOutput>();
    expect(res.output.label).toBe('negative');
    expect(res.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.timings.runMs).toBeGreaterThanOrEqual(0);
  });
});

describe('chatStream', () => {
  it('yields deltas whose concatenation is the result text', async () => {
    const stream = client.chatStream('tiny', hello, { maxTokens: 24 });
    const pieces: string[] = [];
    for await (const text of stream) pieces.push(text);
    const out = await stream.result;
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join('')).toBe(out.text);
    expect(out).toMatchObject({ finishReason: 'length', usage: { completionTokens: 24 } });
  });

  it('resolves result without anyone iterating', async () => {
    const out = await client.chatStream('tiny', hello, { maxTokens: 5 }).result;
    expect(out.usage.completionTokens).toBe(5);
  });

  it('throws from the iterator and rejects result when the request fails before the first token', async () => {
    const stream = client.chatStream('nope', hello);
    const err = await apiError(
      (async () => {
        for await (const _ of stream) {
          /* none */
        }
      })(),
    );
    expect(err).toMatchObject({ code: 'model_not_found', status: 404, param: 'model' });
    await expect(stream.result).rejects.toBe(err);
  });

  it('cancels the request when the caller leaves the loop early', async () => {
    const stream = client.chatStream('tiny', hello, { maxTokens: 1000 });
    for await (const _ of stream) break;
    const err = await apiError(stream.result);
    expect(err.code).toBe('cancelled');
  });

  it('reports an error sent inside the stream (the producer shuts down mid-answer)', async () => {
    const second = await startProducer(config, { logger, port: 0 });
    const stream = new InterfleetClient({ baseUrl: second.url }).chatStream('tiny', hello, { maxTokens: 1500 });
    const pieces: string[] = [];
    let closing: Promise<void> | undefined;
    const err = await apiError(
      (async () => {
        for await (const text of stream) {
          pieces.push(text);
          closing ??= second.close(0);
        }
      })(),
    );
    await closing;
    expect(pieces.length).toBeGreaterThan(0);
    expect(err).toMatchObject({ code: 'unavailable', status: 503, retryable: true });
    await expect(stream.result).rejects.toBe(err);
  });
});

describe('errors', () => {
  it('404 model_not_found for an unknown model', async () => {
    const err = await apiError(client.sentiment('gpt-9', 'hello'));
    expect(err).toMatchObject({ code: 'model_not_found', status: 404, param: 'model', retryable: false });
    expect(isRetryable(err)).toBe(false);
  });

  it('400 bad_request naming the field for bad input', async () => {
    const err = await apiError(client.sentiment('tiny', ''));
    expect(err).toMatchObject({ code: 'bad_request', status: 400, param: 'input.text' });
    expect(err.message).toContain('input.text');
  });

  it('504 deadline_exceeded when nothing answers within timeoutMs', async () => {
    const started = Date.now();
    const err = await apiError(client.sentiment('idle', 'hello', { timeoutMs: 300 }));
    expect(err).toMatchObject({ code: 'deadline_exceeded', status: 504, retryable: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(err.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('429 overloaded with retryAfterMs when the pool queue is full', async () => {
    const queue = new Queue(queueName('rt', 'full'), { connection: redis.duplicate(), prefix: config.redis.prefix });
    const caller = new AbortController();
    const first = client.sentiment('full', 'first', { timeoutMs: 5000, signal: caller.signal });
    const firstErr = apiError(first);
    await until(async () => (await queue.getWaitingCount()) === 1);
    const err = await apiError(client.sentiment('full', 'second'));
    expect(err).toMatchObject({ code: 'overloaded', status: 429, retryAfterMs: 1000, retryable: true });
    caller.abort();
    expect((await firstErr).code).toBe('cancelled');
    await until(async () => (await queue.getWaitingCount()) === 0);
    await queue.close();
  });

  it('503 unavailable with retryAfterMs when the producer cannot reach Redis', async () => {
    const proxy = await startRedisProxy(REDIS_URL);
    const cut = await startProducer({ ...config, redis: { ...config.redis, url: proxy.url } }, { logger, port: 0 });
    try {
      const viaProxy = new InterfleetClient({ baseUrl: cut.url });
      expect((await viaProxy.sentiment('tiny', 'fine')).task).toBe('sentiment');
      proxy.down();
      const err = await apiError(viaProxy.sentiment('tiny', 'fine'));
      expect(err).toMatchObject({ code: 'unavailable', status: 503, retryAfterMs: 1000, retryable: true });
      proxy.up();
      await until(async () => (await viaProxy.models()).every((m) => m.workers !== null));
    } finally {
      proxy.up();
      await cut.close(0);
      proxy.close();
    }
  });

  it('unavailable with the cause when the producer cannot be reached at all', async () => {
    const port = await freePort();
    const err = await apiError(new InterfleetClient({ baseUrl: `http://127.0.0.1:${port}` }).models());
    expect(err).toMatchObject({ code: 'unavailable', status: undefined, retryable: true });
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('gives up on its own a little after the deadline when the server hangs', async () => {
    const hanging: Server = createHttpServer(() => undefined);
    await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
    try {
      const { port } = hanging.address() as AddressInfo;
      const err = await apiError(
        new InterfleetClient({ baseUrl: `http://127.0.0.1:${port}` }).sentiment('tiny', 'x', { timeoutMs: 50 }),
      );
      expect(err).toMatchObject({ code: 'deadline_exceeded', status: undefined });
    } finally {
      hanging.closeAllConnections();
      hanging.close();
    }
  });

  it('cancelled when the caller aborts', async () => {
    const caller = new AbortController();
    const pending = client.sentiment('idle', 'x', { signal: caller.signal });
    setTimeout(() => caller.abort(), 50);
    expect((await apiError(pending)).code).toBe('cancelled');
  });
});

async function until(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** A TCP proxy in front of Redis that can drop every connection and refuse new ones (an outage). */
async function startRedisProxy(target: string) {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  let isUp = true;
  const server = createServer((client) => {
    if (!isUp) return void client.destroy();
    const remote = connect(Number(upstream.port || 6379), upstream.hostname);
    for (const s of [client, remote]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        remote.destroy();
      });
    }
    client.pipe(remote).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const auth = upstream.username || upstream.password ? `${upstream.username}:${upstream.password}@` : '';
  return {
    url: `redis://${auth}127.0.0.1:${port}${upstream.pathname}`,
    down() {
      isUp = false;
      for (const s of sockets) s.destroy();
    },
    up() {
      isUp = true;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
