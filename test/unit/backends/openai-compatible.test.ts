/**
 * The openai backend against a real server is tested end to end (interfleet's
 * own /v1/chat/completions); here: the error mapping, an unreachable server,
 * and streaming plus mid-stream abort against a minimal SSE stub.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../../common/errors.ts';
import { createOpenAiBackend, mapUpstreamError } from '../../../gpu-worker/backends/index.ts';
import { chatInput, collectDeltas, poolFixture } from './fixtures.ts';

function apiError(status: number, headers: Record<string, string> = {}): APIError {
  return APIError.generate(status, { message: `status ${status}` }, undefined, new Headers(headers));
}

/** A port that nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('mapUpstreamError', () => {
  it.each([
    {
      name: 'connection refused',
      err: new APIConnectionError({ message: 'Connection error.' }),
      code: 'backend_failed',
    },
    { name: 'timeout', err: new APIConnectionTimeoutError(), code: 'backend_failed' },
    { name: '400', err: apiError(400), code: 'bad_request' },
    { name: '404', err: apiError(404), code: 'bad_request' },
    { name: '422', err: apiError(422), code: 'bad_request' },
    { name: '401', err: apiError(401), code: 'internal' },
    { name: '403', err: apiError(403), code: 'internal' },
    { name: '408', err: apiError(408), code: 'backend_failed' },
    { name: '429', err: apiError(429), code: 'backend_failed' },
    { name: '500', err: apiError(500), code: 'backend_failed' },
    { name: '503', err: apiError(503), code: 'backend_failed' },
    {
      name: 'error event mid-stream (no status)',
      err: new APIError(undefined, undefined, 'boom', undefined),
      code: 'backend_failed',
    },
    { name: 'anything else', err: new TypeError('bad chunk'), code: 'backend_failed' },
  ])('$name → $code, keeping the cause', ({ err, code }) => {
    const mapped = mapUpstreamError(err);
    expect(mapped).toBeInstanceOf(FleetError);
    expect(mapped.code).toBe(code);
    expect(mapped.cause).toBe(err);
  });

  it('passes a FleetError through', () => {
    const err = new FleetError('bad_request', 'tool messages');
    expect(mapUpstreamError(err)).toBe(err);
  });

  it.each<{ headers: Record<string, string>; retryAfterMs: number | undefined }>([
    { headers: { 'retry-after': '2' }, retryAfterMs: 2000 },
    { headers: { 'retry-after-ms': '150', 'retry-after': '2' }, retryAfterMs: 150 },
    { headers: {}, retryAfterMs: undefined },
  ])('reads Retry-After $headers', ({ headers, retryAfterMs }) => {
    expect(mapUpstreamError(apiError(429, headers)).retryAfterMs).toBe(retryAfterMs);
  });
});

/** Streams "Hel", "lo", " world" 20 ms apart, then finish_reason length and usage, as OpenAI does. */
function sseStub(): Server {
  const chunk = (choices: unknown[], usage?: unknown): string =>
    `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices, usage })}\n\n`;
  return createHttpServer((req, res) => {
    req.resume().on('end', () => {
      void (async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const content of ['Hel', 'lo', ' world']) {
          res.write(chunk([{ index: 0, delta: { content }, finish_reason: null }]));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        res.write(chunk([{ index: 0, delta: {}, finish_reason: 'length' }]));
        res.write(chunk([], { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 }));
        res.end('data: [DONE]\n\n');
      })();
    });
  });
}

describe('openai backend', () => {
  let stub: Server;
  let stubUrl: string;
  beforeAll(async () => {
    stub = sseStub();
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
    const address = stub.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    stubUrl = `http://127.0.0.1:${address.port}/v1`;
  });
  afterAll(async () => {
    stub.closeAllConnections(); // keep-alive sockets would hold close() for seconds
    await new Promise((resolve) => stub.close(resolve));
  });

  it('passes deltas through as they arrive and reports usage', async () => {
    const opts = collectDeltas();
    const out = await createOpenAiBackend(poolFixture({ backend: 'openai', baseUrl: stubUrl })).run(
      chatInput('hi'),
      opts,
    );
    expect(opts.deltas).toEqual(['Hel', 'lo', ' world']);
    expect(out).toEqual({
      task: 'chat',
      text: 'Hello world',
      finishReason: 'length',
      usage: { promptTokens: 4, completionTokens: 3 },
    });
  });

  it('rejects with the signal reason when aborted mid-stream', async () => {
    const ac = new AbortController();
    const reason = new Error('deadline');
    const opts = { signal: ac.signal, onDelta: () => ac.abort(reason) };
    const backend = createOpenAiBackend(poolFixture({ backend: 'openai', baseUrl: stubUrl }));
    await expect(backend.run(chatInput('hi'), opts)).rejects.toBe(reason);
  });

  it('fails with a retryable backend_failed when the server is unreachable', async () => {
    const pool = poolFixture({ backend: 'openai', baseUrl: `http://127.0.0.1:${await closedPort()}/v1` });
    const backend = createOpenAiBackend(pool);
    const run = backend.run(chatInput('hi'), collectDeltas());
    await expect(run).rejects.toBeInstanceOf(FleetError);
    await expect(run).rejects.toMatchObject({ code: 'backend_failed', retryable: true });
    await expect(run).rejects.toHaveProperty('cause', expect.any(APIConnectionError));
  });

  it('rejects tool messages, which the contract cannot carry', async () => {
    const backend = createOpenAiBackend(poolFixture({ backend: 'openai', baseUrl: 'http://127.0.0.1:1/v1' }));
    const run = backend.run({ task: 'chat', messages: [{ role: 'tool', content: '42' }] }, collectDeltas());
    await expect(run).rejects.toMatchObject({ code: 'bad_request', param: 'messages[0].role' });
  });

  it('rejects with the signal reason when already aborted', async () => {
    const backend = createOpenAiBackend(poolFixture({ backend: 'openai', baseUrl: 'http://127.0.0.1:1/v1' }));
    const ac = new AbortController();
    const reason = new Error('deadline');
    ac.abort(reason);
    await expect(backend.run(chatInput('hi'), collectDeltas(ac.signal))).rejects.toBe(reason);
  });
});
