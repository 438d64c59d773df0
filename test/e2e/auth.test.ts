/**
 * API keys through real HTTP against a real producer and worker: the official
 * `openai` client with and without `apiKey` (401 in OpenAI's shape), scopes
 * (403), tenants from the key (another tenant's batch and training job are
 * 404; a body tenant needs admin), per-tenant rate limits (429 with
 * Retry-After), public probes, and the start-up rule for non-loopback hosts.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import OpenAI, { type APIError } from 'openai';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { InterfleetApiError, InterfleetClient } from '../../producer/client/index.ts';
import { startProducer } from '../../producer/server.ts';
import { deleteKeys, startFleet, testConfig, type TestFleet } from '../helpers/fleet.ts';

const KEYS = {
  admin: 'admin-key-0123456789abcdef',
  teamA: 'team-a-key-0123456789abcdef',
  teamB: 'team-b-key-0123456789abcdef',
  reader: 'reader-key-0123456789abcdef',
  throttled: 'throttled-key-0123456789abc',
};
const sha256 = (key: string) => createHash('sha256').update(key).digest('hex');

// team-b's key is given by its digest, as a production key file would.
const keysYaml = `
keys:
  - { id: ops, key: ${KEYS.admin}, tenant: ops, scopes: [admin] }
  - { id: team-a-ci, key: ${KEYS.teamA}, tenant: team-a, scopes: [infer, batch, train, read] }
  - { id: team-b-ci, sha256: ${sha256(KEYS.teamB)}, tenant: team-b, scopes: [infer, batch, train] }
  - { id: team-a-dash, key: ${KEYS.reader}, tenant: team-a, scopes: [read] }
  - { id: throttled, key: ${KEYS.throttled}, tenant: throttled, scopes: [infer] }
`;

const yaml = `
pools:
  - name: tiny
    backend: echo
    lanes: { realtime: { concurrency: 4 }, bulk: { concurrency: 0 }, training: { concurrency: 1, programs: ['${process.execPath}'] } }
producer:
  rateLimit: { max: 1000, windowMs: 60000, tenants: { throttled: { max: 3 } } }
`;

let fleet: TestFleet;
let dir: string;
let inputUri: string;
const openai = (apiKey: string | null) =>
  new OpenAI({
    baseURL: `${fleet.producer.url}/v1`,
    apiKey: apiKey ?? 'unsent',
    maxRetries: 0,
    // `null` drops the header: the client sends no key at all.
    ...(apiKey === null && { defaultHeaders: { Authorization: null } }),
  });
const call = (path: string, key: string | undefined, init: RequestInit = {}) =>
  fetch(`${fleet.producer.url}${path}`, {
    ...init,
    headers: {
      ...(init.body !== undefined && { 'content-type': 'application/json' }),
      ...(key !== undefined && { authorization: `Bearer ${key}` }),
      ...(init.headers as Record<string, string> | undefined),
    },
  });
const chat = { model: 'tiny', messages: [{ role: 'user' as const, content: 'hello' }] };

beforeAll(async () => {
  fleet = await startFleet({ yaml, env: { INTERFLEET_API_KEYS: keysYaml } });
  dir = await mkdtemp(join(tmpdir(), 'auth-'));
  const input = join(dir, 'in.jsonl');
  await writeFile(
    input,
    JSON.stringify({ custom_id: 'r1', method: 'POST', url: '/v1/chat/completions', body: { messages: [] } }) + '\n',
  );
  inputUri = pathToFileURL(input).href;
});
afterAll(async () => {
  await fleet.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('API keys', () => {
  it('turns auth on when keys are configured', () => {
    expect(fleet.producer.auth).toEqual({ enabled: true, keys: 5 });
  });

  it('answers 401 in OpenAI shape to the openai client without a key and with a wrong one', async () => {
    for (const key of [null, 'wrong-key-0123456789abcdef']) {
      const attempt = openai(key).chat.completions.create(chat);
      await expect(attempt).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      await expect(attempt).rejects.toMatchObject({
        status: 401,
        code: 'invalid_api_key',
        type: 'invalid_request_error',
      });
    }
    const res = await call('/v1/models', undefined);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect(await res.json()).toEqual({
      error: {
        message: expect.stringContaining("You didn't provide an API key"),
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
    const wrong = (await (await call('/v1/models', 'nope-0123456789abcdefgh')).json()) as {
      error: { message: string };
    };
    expect(wrong.error.message).toBe('Incorrect API key provided.');
  });

  it('serves a right key through the openai client', async () => {
    const completion = await openai(KEYS.teamA).chat.completions.create(chat);
    expect(completion.choices[0]!.message.role).toBe('assistant');
    expect((await openai(KEYS.reader).models.list()).data.map((m) => m.id)).toEqual(['tiny']);
  });

  it('answers 403 when the key lacks the scope', async () => {
    const attempt = openai(KEYS.reader).chat.completions.create(chat);
    await expect(attempt).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    await expect(attempt).rejects.toMatchObject({ status: 403, code: 'forbidden' });
    const explain = await call('/v1/scheduler/explain', KEYS.teamB);
    expect(explain.status).toBe(403);
    expect(((await explain.json()) as { error: { message: string } }).error.message).toBe(
      "API key 'team-b-ci' lacks the scope GET /v1/scheduler/explain needs: 'read'",
    );
    expect((await call('/v1/scheduler/explain', KEYS.reader)).status).toBe(200);
  });

  it('leaves probes and /metrics open, and asks a key for unknown routes', async () => {
    for (const path of ['/healthz', '/metrics']) expect((await call(path, undefined)).status).toBe(200);
    expect((await call('/nowhere', undefined)).status).toBe(401);
    expect((await call('/nowhere', KEYS.reader)).status).toBe(404);
  });

  it('sends the key from the typed client (option or INTERFLEET_API_KEY) and maps 401 to unauthorized', async () => {
    const withKey = new InterfleetClient({ baseUrl: fleet.producer.url, apiKey: KEYS.teamA });
    expect((await withKey.listBatches({ limit: 1 })).object).toBe('list');
    const without = new InterfleetClient({ baseUrl: fleet.producer.url, apiKey: '' });
    const err = await without.listBatches({ limit: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterfleetApiError);
    expect(err).toMatchObject({ code: 'unauthorized', status: 401 });
  });
});

describe('the CLI', () => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const cli = (args: string[], env: Record<string, string>) =>
    promisify(execFile)(
      join(root, 'node_modules/.bin/tsx'),
      ['producer/cli.ts', '--url', fleet.producer.url, ...args],
      {
        cwd: root,
        env: { ...process.env, INTERFLEET_API_KEY: '', ...env },
      },
    ).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it('sends --api-key or INTERFLEET_API_KEY, and says how when the key is missing', async () => {
    const withOption = await cli(['--api-key', KEYS.teamA, 'batch', 'list'], {});
    expect(withOption).toMatchObject({ code: 0, stderr: '' });
    expect((await cli(['batch', 'list'], { INTERFLEET_API_KEY: KEYS.teamA })).code).toBe(0);
    const without = await cli(['batch', 'list'], {});
    expect(without.code).not.toBe(0);
    expect(without.stderr).toBe(
      "interfleet: You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (the openai client's apiKey) (HTTP 401): pass the key with --api-key or env INTERFLEET_API_KEY\n",
    );
  });
});

describe('tenants come from the key', () => {
  it("hides another tenant's batch (404 as a missing one) on get, cancel and list; admin sees all", async () => {
    const a = openai(KEYS.teamA);
    const b = openai(KEYS.teamB);
    const batch = await a.batches.create({
      input_file_id: inputUri,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect((batch as unknown as { tenant: string }).tenant).toBe('team-a');
    expect((await a.batches.retrieve(batch.id)).id).toBe(batch.id);

    const missing = await b.batches.retrieve('batch_00000000000000000000').catch((e: unknown) => e);
    for (const attempt of [() => b.batches.retrieve(batch.id), () => b.batches.cancel(batch.id)]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
      expect((err as APIError).message).toBe(
        (missing as APIError).message.replace('batch_00000000000000000000', batch.id),
      );
    }
    const bList = await b.batches.list();
    expect(bList.data.map((x) => x.id)).not.toContain(batch.id);
    const bBatch = await b.batches.create({
      input_file_id: inputUri,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const aIds = (await a.batches.list()).data.map((x) => x.id);
    expect(aIds).toContain(batch.id);
    expect(aIds).not.toContain(bBatch.id);
    const all = (await openai(KEYS.admin).batches.list()).data.map((x) => x.id);
    expect(all).toEqual(expect.arrayContaining([batch.id, bBatch.id]));
    expect((await openai(KEYS.admin).batches.cancel(bBatch.id)).status).toMatch(/cancell/);
  });

  it('refuses a body tenant other than the key’s unless the key is admin', async () => {
    const body = { input_file: inputUri, endpoint: '/v1/chat/completions' };
    const refused = await call('/v1/batches', KEYS.teamA, {
      method: 'POST',
      body: JSON.stringify({ ...body, tenant: 'team-b' }),
    });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({
      error: { code: 'forbidden', param: 'tenant', type: 'permission_error' },
    });
    const own = await call('/v1/batches', KEYS.teamA, {
      method: 'POST',
      body: JSON.stringify({ ...body, tenant: 'team-a' }),
    });
    expect(((await own.json()) as { tenant: string }).tenant).toBe('team-a');
    const admin = await call('/v1/batches', KEYS.admin, {
      method: 'POST',
      body: JSON.stringify({ ...body, tenant: 'team-b' }),
    });
    expect(((await admin.json()) as { tenant: string }).tenant).toBe('team-b');
    const adminOwn = await call('/v1/batches', KEYS.admin, { method: 'POST', body: JSON.stringify(body) });
    expect(((await adminOwn.json()) as { tenant: string }).tenant).toBe('ops');
  });

  it("hides another tenant's training job (get, cancel, logs) and refuses a body tenant", async () => {
    const job = {
      pool: 'tiny',
      command: process.execPath,
      args: ['-e', 'setTimeout(() => {}, 60000)'],
      data_uri: `${pathToFileURL(join(dir, 'corpus')).href}/`,
      shard: 'none',
      checkpoint_uri: `${pathToFileURL(join(dir, 'ckpt')).href}/`,
      workers: 1,
    };
    const refused = await call('/v1/training/jobs', KEYS.teamA, {
      method: 'POST',
      body: JSON.stringify({ ...job, tenant: 'team-b' }),
    });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: { param: 'tenant' } });
    const created = await call('/v1/training/jobs', KEYS.teamA, { method: 'POST', body: JSON.stringify(job) });
    expect(created.status).toBe(200);
    const { id, tenant } = (await created.json()) as { id: string; tenant: string };
    expect(tenant).toBe('team-a');
    expect((await call(`/v1/training/jobs/${id}`, KEYS.reader)).status).toBe(200);
    const missing = (await (await call('/v1/training/jobs/train_00000000000000000000', KEYS.teamB)).json()) as object;
    for (const [path, method] of [
      [`/v1/training/jobs/${id}`, 'GET'],
      [`/v1/training/jobs/${id}/logs`, 'GET'],
      [`/v1/training/jobs/${id}/cancel`, 'POST'],
    ] as const) {
      const res = await call(path, KEYS.teamB, { method });
      expect(res.status).toBe(404);
      expect(JSON.stringify(await res.json())).toBe(JSON.stringify(missing).replace('train_00000000000000000000', id));
    }
    const cancelled = await call(`/v1/training/jobs/${id}/cancel`, KEYS.teamA, { method: 'POST' });
    expect(((await cancelled.json()) as { status: string }).status).toBe('cancelled');
  });
});

describe('rate limits', () => {
  it('answers 429 with Retry-After in OpenAI shape once a tenant spends its budget', async () => {
    const client = openai(KEYS.throttled);
    for (let i = 0; i < 3; i++) await client.chat.completions.create(chat);
    const res = await call('/v1/chat/completions', KEYS.throttled, { method: 'POST', body: JSON.stringify(chat) });
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await res.json()).toMatchObject({
      error: { type: 'rate_limit_error', code: 'overloaded', message: expect.stringContaining("tenant 'throttled'") },
    });
    await expect(client.chat.completions.create(chat)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    // Another tenant's budget is its own.
    expect((await openai(KEYS.teamA).chat.completions.create(chat)).object).toBe('chat.completion');
  });
});

describe('start-up', () => {
  it('refuses a non-loopback listen address without keys, unless auth is none on purpose', async () => {
    const refused = startProducer(testConfig('', { HOST: '0.0.0.0' }), { logger: silentLogger(), port: 0 });
    await expect(refused).rejects.toThrow(/refusing to listen on 0\.0\.0\.0 without API keys.*producer\.auth: none/);
    const open = await startProducer(testConfig('', { HOST: '0.0.0.0', INTERFLEET_AUTH: 'none' }), {
      logger: silentLogger(),
      port: 0,
      batchControl: false,
    });
    try {
      expect(open.auth).toMatchObject({ enabled: false });
      expect((await fetch(`${open.url.replace('0.0.0.0', '127.0.0.1')}/v1/models`)).status).toBe(200);
    } finally {
      await open.close(0);
    }
  });

  it('logs the key id and tenant of each request, never the key', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const config = testConfig('', { INTERFLEET_API_KEYS: keysYaml });
    const producer = await startProducer(config, { logger, port: 0, batchControl: false });
    try {
      expect(
        (await fetch(`${producer.url}/v1/batches`, { headers: { authorization: `Bearer ${KEYS.teamA}` } })).status,
      ).toBe(200);
    } finally {
      await producer.close(0);
      await deleteKeys(fleet.redis, config.redis.prefix);
    }
    const completed = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'request completed');
    expect(completed).toMatchObject({ keyId: 'team-a-ci', tenant: 'team-a' });
    for (const key of Object.values(KEYS)) expect(lines.join('\n')).not.toContain(key);
  });

  it('names the entry and field of a bad key file', async () => {
    const bad =
      'keys:\n  - { id: a, key: short, tenant: t, scopes: [infer] }\n  - { id: b, sha256: abc, tenant: t, scopes: [fly] }\n';
    await expect(
      startProducer(testConfig('', { INTERFLEET_API_KEYS: bad }), { logger: silentLogger(), port: 0 }),
    ).rejects.toThrow(/keys\.0\.key: key is at least 16 characters[\s\S]*keys\.1\.sha256[\s\S]*keys\.1\.scopes\.0/);
  });
});
