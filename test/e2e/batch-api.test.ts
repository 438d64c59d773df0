/**
 * The Batch API through real HTTP: the official `openai` client's
 * `batches.*` unchanged, our typed client SDK, every error case with its
 * status and field, and cron launches once per firing. Batches are not run
 * to completion here (no scheduler, no workers); the full life cycle is
 * test/e2e/batch.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore } from '../../common/batch/batch-state.ts';
import type { BatchSchedule } from '../../common/config.ts';
import { controlJobId } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { closeRedis, createRedis, waitForRedis, type RedisClient } from '../../common/redis.ts';
import { batchControlQueue } from '../../common/topology.ts';
import { BatchService } from '../../producer/batch/batch-service.ts';
import { InterfleetApiError, InterfleetClient, type ApiBatch } from '../../producer/client/index.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

const yaml = `
pools:
  - name: tiny
    backend: echo
  - name: other
    backend: echo
`;

let fleet: TestFleet;
let store: BatchStore;
let openai: OpenAI;
let sdk: InterfleetClient;
let dir: string;
let inputUri: string;

beforeAll(async () => {
  // No workers and no scheduler: batches are planned (the producer's control worker) but never run.
  fleet = await startFleet({ yaml, workers: 0 });
  store = new BatchStore(fleet.redis, fleet.prefix);
  openai = new OpenAI({ baseURL: `${fleet.producer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  sdk = new InterfleetClient({ baseUrl: fleet.producer.url });
  dir = await mkdtemp(join(tmpdir(), 'batch-api-'));
  const input = join(dir, 'in.jsonl');
  const line = (i: number) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { messages: [{ role: 'user', content: `hello ${i}` }] },
    });
  await writeFile(input, [1, 2, 3].map(line).join('\n') + '\n');
  inputUri = pathToFileURL(input).href;
});
afterAll(async () => {
  await fleet.stop();
  await rm(dir, { recursive: true, force: true });
});

function http(method: string, path: string, body?: unknown) {
  return fetch(`${fleet.producer.url}${path}`, {
    method,
    ...(body !== undefined && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
}

/** Moves a batch as the other roles would (planning, finalisation), to reach the states under test. */
async function force(id: string, to: 'failed' | 'cancelled'): Promise<void> {
  const { moved } = await store.transition(id, ['validating', 'in_progress', 'cancelling'], to, {
    [`${to}_at`]: Date.now(),
  });
  expect(moved).toBe(true);
}

describe('the openai client', () => {
  it('creates a batch from a file:// input_file_id, validating, with our fields beside', async () => {
    const batch = await openai.batches.create({
      input_file_id: inputUri,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { job: 'nightly' },
    });
    expect(batch).toMatchObject({
      object: 'batch',
      status: 'validating',
      endpoint: '/v1/chat/completions',
      input_file_id: inputUri,
      completion_window: '24h',
      output_file_id: null,
      error_file_id: null,
      errors: null,
      metadata: { job: 'nightly' },
      request_counts: { total: 0, completed: 0, failed: 0 },
      model: 'tiny',
      priority: 0,
      tenant: 'default',
      source: 'api',
    });
    expect(batch.id).toMatch(/^batch_[0-9a-f]{20}$/);
    expect((batch as unknown as ApiBatch).output_location).toBe(pathToFileURL(join(dir, batch.id)).href + '/');
    expect(batch.expires_at! - batch.created_at).toBe(86_400);
    expect(Math.abs(batch.created_at - Date.now() / 1000)).toBeLessThan(60);
    // Planning was queued for the producer's control worker.
    const queue = new Queue(batchControlQueue, { connection: fleet.redis.duplicate(), prefix: fleet.prefix });
    try {
      const job = await queue.getJob(controlJobId.plan(batch.id));
      expect(job?.data).toEqual({ kind: 'plan', batchId: batch.id });
    } finally {
      await queue.close();
    }
  });

  it('answers a retry with the same Idempotency-Key with the batch the first try created', async () => {
    const key = `nightly-${Date.now()}`;
    const body = { input_file_id: inputUri, endpoint: '/v1/chat/completions', completion_window: '24h' } as const;
    const first = await openai.batches.create(body, { headers: { 'Idempotency-Key': key } });
    const retry = await openai.batches.create(body, { headers: { 'Idempotency-Key': key } });
    expect(retry.id).toBe(first.id);
    // Another key, or none, is another batch.
    expect((await openai.batches.create(body, { headers: { 'Idempotency-Key': `${key}-2` } })).id).not.toBe(first.id);
    expect((await openai.batches.create(body)).id).not.toBe(first.id);
    // The same key for a different request is refused rather than answered with the wrong batch.
    const other = openai.batches.create({ ...body, metadata: { run: '2' } }, { headers: { 'Idempotency-Key': key } });
    await expect(other).rejects.toMatchObject({ status: 409 });
    await expect(other).rejects.toThrow(/Idempotency-Key was used for a different request/);
    // A malformed key is a 400 naming the header.
    const bad = await fetch(`${fleet.producer.url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'x'.repeat(256) },
      body: JSON.stringify(body),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(
      /^Idempotency-Key: at most 255/,
    );
  });

  it('retrieves a batch by id', async () => {
    const created = await openai.batches.create({
      input_file_id: inputUri,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const got = await openai.batches.retrieve(created.id);
    expect(got.id).toBe(created.id);
    expect(got.input_file_id).toBe(inputUri);
    expect(['validating', 'in_progress']).toContain(got.status);
  });

  it('lists batches newest first, page by page with after', async () => {
    for (let i = 0; i < 3; i++) {
      await openai.batches.create({
        input_file_id: inputUri,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
    }
    const all: string[] = [];
    for await (const b of openai.batches.list({ limit: 2 })) all.push(b.id);
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(all).toEqual([...all].sort().reverse());
    expect(new Set(all).size).toBe(all.length);

    const first = await openai.batches.list({ limit: 2 });
    expect(first.data.map((b) => b.id)).toEqual(all.slice(0, 2));
    expect(first.has_more).toBe(true);
    const second = await openai.batches.list({ limit: 2, after: all[1]! });
    expect(second.data.map((b) => b.id)).toEqual(all.slice(2, 4));

    const raw = (await (await http('GET', '/v1/batches?limit=1')).json()) as Record<string, unknown>;
    expect(raw).toMatchObject({ object: 'list', first_id: all[0], last_id: all[0], has_more: true });
  });

  it('cancels a batch (cancelling), and a second cancel answers the same', async () => {
    const created = await openai.batches.create({
      input_file_id: inputUri,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const cancelled = await openai.batches.cancel(created.id);
    expect(cancelled.status).toBe('cancelling');
    expect(cancelled.cancelling_at).toBeGreaterThanOrEqual(created.created_at);
    const again = await openai.batches.cancel(created.id);
    expect(again.status).toBe('cancelling');
    expect(again.cancelling_at).toBe(cancelled.cancelling_at);
  });

  it('answers 404 for an unknown batch and 409 for cancelling a finished one', async () => {
    await expect(openai.batches.retrieve('batch_00000000000000000000')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const created = await openai.batches.create({
      input_file_id: inputUri,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    await force(created.id, 'failed');
    const cancel = openai.batches.cancel(created.id);
    await expect(cancel).rejects.toBeInstanceOf(OpenAI.ConflictError);
    await expect(cancel).rejects.toMatchObject({ status: 409, code: 'conflict' });
  });
});

describe('errors over raw HTTP', () => {
  const valid = { input_file: 'file:///data/in.jsonl', endpoint: '/v1/infer' };

  it.each([
    ['no input', { endpoint: '/v1/infer' }, 'input_file', 'input_file is required'],
    ['both inputs', { ...valid, input_file_id: 'file:///x.jsonl' }, 'input_file_id', 'not both'],
    ['a bad URI', { ...valid, input_file: 'http://x/y' }, 'input_file', 'expected one of file://, gs://, oci://'],
    ['a bad window', { ...valid, completion_window: '1 day' }, 'completion_window', 'positive duration'],
    ['a too long window', { ...valid, completion_window: '30d' }, 'completion_window', 'longer than the limit of 7d'],
    ['bad metadata', { ...valid, metadata: { k: 1 } }, 'metadata.k', 'metadata values must be strings'],
    ['a bad endpoint', { ...valid, endpoint: '/v1/embeddings' }, 'endpoint', 'endpoint must be one of'],
  ])('400 for %s', async (_label, body, param, message) => {
    const before = (await store.listIds(100)).ids.length;
    const res = await http('POST', '/v1/batches', body);
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: Record<string, unknown> };
    expect(error).toMatchObject({ type: 'invalid_request_error', param });
    expect(error.message).toContain(message);
    expect((await store.listIds(100)).ids.length).toBe(before);
  });

  it('404 for an unknown model', async () => {
    const res = await http('POST', '/v1/batches', { ...valid, model: 'nope' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({
      error: { code: 'model_not_found', param: 'model', type: 'not_found_error' },
    });
  });

  it('404 for an unknown batch, 400 for a malformed id or limit', async () => {
    for (const path of ['/v1/batches/batch_00000000000000000000', '/v1/batches/batch_00000000000000000000/cancel']) {
      const res = await http(path.endsWith('cancel') ? 'POST' : 'GET', path);
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: 'not_found', param: 'batch_id' } });
    }
    const bad = await http('GET', '/v1/batches/nope');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { param: 'batch_id' } });
    const limit = await http('GET', '/v1/batches?limit=500');
    expect(limit.status).toBe(400);
    expect(await limit.json()).toMatchObject({
      error: { param: 'limit', message: expect.stringContaining('1 to 100') },
    });
  });
});

describe('the client SDK', () => {
  it('creates, reads, lists page by page, cancels and waits for the end', async () => {
    const created = await sdk.createBatch({
      input_file: inputUri,
      endpoint: '/v1/chat/completions',
      model: 'other',
      completion_window: '2h',
      output_location: pathToFileURL(join(dir, 'out')).href,
      priority: 5,
      tenant: 'acme',
    });
    expect(created).toMatchObject({
      model: 'other',
      output_location: pathToFileURL(join(dir, 'out')).href + '/',
      priority: 5,
      tenant: 'acme',
    });
    expect((await sdk.getBatch(created.id)).id).toBe(created.id);

    const pages: string[][] = [];
    for await (const page of sdk.batchPages({ limit: 3 })) pages.push(page.data.map((b) => b.id));
    expect(pages[0]![0]).toBe(created.id);
    expect(pages.slice(0, -1).every((p) => p.length === 3)).toBe(true);

    expect((await sdk.cancelBatch(created.id)).status).toBe('cancelling');
    const seen: string[] = [];
    const final = await sdk.waitForBatch(created.id, {
      intervalMs: 20,
      onProgress: (b) => {
        seen.push(b.status);
        // Finalisation's job (no scheduler runs here): end the batch once the waiter has seen it cancelling.
        if (seen.length === 2) void force(created.id, 'cancelled');
      },
    });
    expect(final.status).toBe('cancelled');
    expect(seen.slice(0, 2)).toEqual(['cancelling', 'cancelling']);
    expect(seen.at(-1)).toBe('cancelled');
  });

  it('raises typed errors: 404 unknown, 400 naming the field', async () => {
    await expect(sdk.getBatch('batch_00000000000000000000')).rejects.toMatchObject({ status: 404 });
    const bad = sdk.createBatch({ input_file: inputUri, endpoint: '/v1/infer', completion_window: '9d' });
    await expect(bad).rejects.toBeInstanceOf(InterfleetApiError);
    await expect(bad).rejects.toMatchObject({ status: 400, code: 'bad_request', param: 'completion_window' });
  });
});

describe('cron launches', () => {
  let redis: RedisClient;
  let queue: Queue;
  let service: BatchService;

  beforeAll(async () => {
    redis = createRedis(fleet.config.redis, 'command');
    await waitForRedis(redis, 5000);
    queue = new Queue(batchControlQueue, { connection: redis, prefix: fleet.prefix });
    service = new BatchService({ config: fleet.config, redis, store, controlQueue: queue, logger: silentLogger() });
    await writeFile(join(dir, '2026-03-01.jsonl'), '');
  });
  afterAll(async () => {
    await queue.close();
    await closeRedis(redis);
  });

  const schedule: BatchSchedule = {
    name: 'nightly',
    cron: '0 2 * * *',
    tz: 'UTC',
    input: '', // set per test: the temp dir is only known at run time
    endpoint: '/v1/infer',
    model: 'other',
    completionWindow: '6h',
    priority: 2,
    tenant: 'ops',
  };

  it('creates one batch per firing, from the expanded template, whatever the retries', async () => {
    const s = { ...schedule, input: `${pathToFileURL(dir).href}/{date-1d}.jsonl` };
    const firedAt = new Date('2026-03-02T02:00:00Z');
    const id = await service.launchScheduled(s, firedAt);
    expect(await service.launchScheduled(s, firedAt)).toBe(id);
    const state = (await store.get(id))!;
    expect(state.spec).toMatchObject({
      input: `${pathToFileURL(dir).href}/2026-03-01.jsonl`,
      outputPrefix: `${pathToFileURL(dir).href}/${id}/`,
      model: 'other',
      source: 'cron:nightly',
      priority: 2,
      tenant: 'ops',
      completionWindow: '6h',
    });
    expect(await service.launchScheduled(s, new Date('2026-03-03T02:00:00Z'))).not.toBe(id);
  });

  it('finishes a firing that claimed its id but stopped before creating the batch', async () => {
    const s = { ...schedule, name: 'half', input: `${pathToFileURL(dir).href}/{date}.jsonl` };
    const firedAt = new Date('2026-03-01T02:00:00Z');
    const claimed = 'batch_019000000000deadbeef';
    await redis.set(`${fleet.prefix}:{batch-index}:cron:half:${firedAt.getTime()}`, claimed);
    expect(await service.launchScheduled(s, firedAt)).toBe(claimed);
    expect((await store.get(claimed))?.spec.source).toBe('cron:half');
  });

  it('rejects a template it cannot expand', async () => {
    const s = { ...schedule, input: 'gs://bucket/{week}/' };
    await expect(service.launchScheduled(s, new Date())).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('refuses a firing whose file:// input or output lies outside storage.file.roots, creating no batch', async () => {
    const before = (await store.listIds(100)).ids.length;
    for (const s of [
      { ...schedule, name: 'etc', input: 'file:///etc/{date}.jsonl' },
      { ...schedule, name: 'out', input: `${pathToFileURL(dir).href}/{date}.jsonl`, output: 'file:///var/{date}/' },
    ]) {
      await expect(service.launchScheduled(s, new Date('2026-03-01T02:00:00Z'))).rejects.toMatchObject({
        code: 'forbidden',
        message: expect.stringContaining('is outside the folders file:// may name (storage.file.roots: '),
      });
    }
    expect((await store.listIds(100)).ids.length).toBe(before);
  });
});
