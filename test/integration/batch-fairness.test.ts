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
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { plannedBatch, tickedScheduler, type SchedulerEnv } from '../helpers/batch-scheduler.ts';
import { REDIS_URL } from '../helpers/fleet.ts';

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

type Env = SchedulerEnv;

/** A leading scheduler on an injected clock, with `tenants` weights. */
async function setup(tenants: string): Promise<Env> {
  const env = await tickedScheduler(
    redis,
    `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000 }
batch: { windowPerPool: ${WINDOW}, admitEveryMs: 60000, tenants: ${tenants} }
pools: [{ name: p, backend: echo }]
`,
  );
  cleanups.push(() => env.close());
  return env;
}

/** An in_progress batch of `tenant` with `chunks` chunks (two lines each); returns its id. */
async function tenantBatch(env: Env, tenant: string, chunks: number): Promise<string> {
  const { id, entries } = await plannedBatch(env, dir, chunks * 2, { tenant });
  expect(entries).toHaveLength(chunks);
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
  for (let i = 0; i < 10; i++) aIds.push(await tenantBatch(env, 'a', 20));
  const bIds = [await tenantBatch(env, 'b', 100)];
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
