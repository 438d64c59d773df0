/**
 * Weighted fair share of a pool's admission window across tenants, end to
 * end: a real Redis, file:// plans, the scheduler ticked on an injected clock
 * (timers slowed to a minute so only tick() moves anything), and chunks
 * "finished" as a worker would (job removed, chunk settled), oldest first.
 *
 * Tenant a submits ten batches and b one, all with more chunks than the test
 * admits. Each pass frees 4 of the 8 window slots. Deficit round robin bounds
 * the gap at every pass, not only on average: chunks admitted to a, minus
 * weight × those admitted to b, stay within one quantum (1 chunk at equal
 * weights, 2 at 2:1), because a round gives each tenant exactly its quantum and
 * a pass can stop at most one turn short. The old priority-then-age order would
 * have given a (older batches) every chunk.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, batchFiles, newBatchId } from '../../common/batch/batch-state.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { queueName } from '../../common/topology.ts';
import { planToStorage } from '../../producer/batch/plan-to-storage.ts';
import { startScheduler, type RunningScheduler } from '../../scheduler/scheduler.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

const storage = createFileStorage();
const WINDOW = 8;
const FINISHED_PER_PASS = 4;
const PASSES = 30;

let dir: string;
let redis: Redis;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-fairness-'));
  redis = new Redis(REDIS_URL);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  redis.disconnect();
});

interface Env {
  store: BatchStore;
  bulk: Queue;
  clock: { now: number };
  scheduler: RunningScheduler;
}

/** A fresh prefix, its bulk queue and a leading scheduler on an injected clock, with `tenants` weights. */
async function setup(tenants: string): Promise<Env> {
  const config = testConfig(`
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000 }
batch: { windowPerPool: ${WINDOW}, admitEveryMs: 60000, tenants: ${tenants} }
pools: [{ name: p, backend: echo }]
`);
  const prefix = config.redis.prefix;
  const clock = { now: Date.now() };
  const bulk = new Queue(queueName('bulk', 'p'), { connection: redis.duplicate(), prefix });
  const scheduler = await startScheduler(config, { logger: silentLogger(), now: () => clock.now });
  cleanups.push(async () => {
    await scheduler.close();
    await bulk.close();
    await deleteKeys(redis, prefix);
  });
  expect(scheduler.epoch()).toBeGreaterThan(0);
  return { store: new BatchStore(redis, prefix), bulk, clock, scheduler };
}

let seq = 0;
/** An in_progress batch of `tenant` with `chunks` chunks (two lines each); returns its id. */
async function plannedBatch(env: Env, tenant: string, chunks: number): Promise<string> {
  const name = `f${seq++}`;
  const rows = Array.from({ length: chunks * 2 }, (_, i) =>
    JSON.stringify({
      custom_id: `${name}-${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: `line ${i}` } },
    }),
  );
  await writeFile(join(dir, `${name}.jsonl`), `${rows.join('\n')}\n`);
  const outputPrefix = `${pathToFileURL(join(dir, `${name}-out`)).href}/`;
  const input = pathToFileURL(join(dir, `${name}.jsonl`)).href;
  const plan = await planToStorage(storage, input, batchFiles(outputPrefix).plan, {
    endpoint: '/v1/infer',
    model: 'p',
    chunkLines: 2,
  });
  expect(plan.chunks).toBe(chunks);
  const createdAt = env.clock.now + seq; // distinct, increasing ids
  const id = newBatchId(createdAt);
  await env.store.create({
    id,
    endpoint: '/v1/infer',
    model: 'p',
    input,
    outputPrefix,
    completionWindow: '24h',
    createdAt,
    expiresAt: createdAt + 86_400_000,
    metadata: null,
    priority: 0,
    tenant,
    source: 'api',
  });
  await env.store.transition(id, ['validating'], 'in_progress', {
    planned: 1,
    chunks: plan.chunks,
    total: plan.totalLines,
    in_progress_at: createdAt,
  });
  return id;
}

/** What workers would do with the oldest `n` queued chunks: the jobs go, the chunks settle. */
async function finishOldest(env: Env, n: number): Promise<void> {
  for (const job of await env.bulk.getJobs(['waiting'], 0, n - 1, true)) {
    await env.bulk.remove(job.id!);
    await env.store.settleChunk(job.data.batchId, job.data.chunk.index, { outcome: 'done', completed: 2, failed: 0 });
  }
}

/** Chunks admitted so far per batch (their cursors). */
async function cursors(env: Env, ids: string[]): Promise<number[]> {
  return Promise.all(ids.map(async (id) => (await env.store.get(id))!.counters.cursor));
}
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * Tenant a submits 10 batches of 20 chunks, then b one of 100; the scheduler runs PASSES passes,
 * each after FINISHED_PER_PASS chunks finish. Returns chunks admitted per tenant after each pass.
 */
async function run(env: Env): Promise<{ a: number; b: number; aCursors: number[] }[]> {
  const aIds: string[] = [];
  for (let i = 0; i < 10; i++) aIds.push(await plannedBatch(env, 'a', 20));
  const bIds = [await plannedBatch(env, 'b', 100)];
  const history: { a: number; b: number; aCursors: number[] }[] = [];
  await env.scheduler.tick();
  for (let p = 0; p <= PASSES; p++) {
    const aCursors = await cursors(env, aIds);
    history.push({ a: sum(aCursors), b: sum(await cursors(env, bIds)), aCursors });
    expect(await env.bulk.getJobCountByTypes('waiting', 'prioritized', 'delayed', 'active')).toBe(WINDOW);
    await finishOldest(env, FINISHED_PER_PASS);
    env.clock.now += 1000;
    await env.scheduler.tick();
  }
  return history;
}

describe('batch admission: fair share across tenants', () => {
  it('equal weights, 10:1 submission ratio → equal chunks, within one at every pass', async () => {
    const env = await setup('{}');
    const history = await run(env);
    const last = history.at(-1)!;
    expect(last.a + last.b).toBe(WINDOW + PASSES * FINISHED_PER_PASS);
    for (const h of history) expect(Math.abs(h.a - h.b)).toBeLessThanOrEqual(1);
    expect(last).toMatchObject({ a: 64, b: 64 });
    // Within a, its own order: the oldest batch first (20 chunks), then the next.
    expect(last.aCursors.slice(0, 4)).toEqual([20, 20, 20, 4]);
  });

  it('weights 2:1 → chunks 2:1, within one quantum (2) at every pass', async () => {
    const env = await setup('{ a: { weight: 2 } }');
    const history = await run(env);
    const last = history.at(-1)!;
    expect(last.a + last.b).toBe(WINDOW + PASSES * FINISHED_PER_PASS);
    for (const h of history) expect(Math.abs(h.a - 2 * h.b)).toBeLessThanOrEqual(2);
    expect(last.b).toBeGreaterThanOrEqual(42); // 128 / 3 = 42.7
    expect(last.b).toBeLessThanOrEqual(43);
  });
});
