/**
 * The scheduler's batch pass against a real Redis and file:// storage: the
 * fixed admission window, priorities, fencing of a stale leader, expiry,
 * cancel and completion leading to one finalize job. Each test has its own
 * prefix and scheduler; the timers are slowed to a minute so that only
 * tick() moves anything.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { batchFiles, type BatchState } from '../../common/batch/batch-state.ts';
import { chunkJobSchema, controlJobId, partUris } from '../../common/contracts/batch.ts';
import { chunkJobId, queueName } from '../../common/topology.ts';
import {
  batchSpec,
  plannedBatch as plannedBatchIn,
  tickedScheduler,
  type SchedulerEnv,
} from '../helpers/batch-scheduler.ts';
import { REDIS_URL } from '../helpers/fleet.ts';

const yaml = `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000 }
batch: { windowPerPool: 8, admitEveryMs: 60000 }
pools: [{ name: p, backend: echo }]
`;

let dir: string;
let redis: Redis;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-admission-'));
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

async function setup(): Promise<Env> {
  const env = await tickedScheduler(redis, yaml);
  cleanups.push(() => env.close());
  return env;
}

const plannedBatch = (env: Env, lines: number, opts: { priority?: number; expiresAt?: number } = {}) =>
  plannedBatchIn(env, dir, lines, opts);

const state = async (env: Env, id: string): Promise<BatchState> => (await env.store.get(id))!;
const bulkJobs = async (env: Env): Promise<number> =>
  env.bulk.getJobCountByTypes('waiting', 'prioritized', 'delayed', 'active');
const controlJobs = async (env: Env): Promise<number> =>
  env.control.getJobCountByTypes('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed');

/** What a gpu-worker would do with a chunk: the job goes, the chunk settles. */
async function finishChunk(env: Env, id: string, index: number): Promise<void> {
  await env.bulk.remove(chunkJobId(id, index));
  await env.store.settleChunk(id, index, { outcome: 'done', completed: 2, failed: 0 });
}

describe('batch admission', () => {
  it('keeps the pool window full and no fuller, in chunk order', async () => {
    const env = await setup();
    const { id, entries } = await plannedBatch(env, 100);
    expect(entries).toHaveLength(50);

    await env.scheduler.tick();
    expect(await bulkJobs(env)).toBe(8);
    expect((await state(env, id)).counters).toMatchObject({ cursor: 8, admitted: 8, plan_byte: entries[7]!.nextByte });

    const outputPrefix = (await state(env, id)).spec.outputPrefix;
    for (let i = 0; i < 8; i++) {
      const job = (await env.bulk.getJob(chunkJobId(id, i)))!;
      expect(job.name).toBe('chunk');
      expect(job.opts.attempts).toBe(5);
      expect(chunkJobSchema.parse(job.data)).toEqual({
        batchId: id,
        endpoint: '/v1/infer',
        model: 'p',
        chunk: entries[i]!.chunk,
        ...partUris(batchFiles(outputPrefix).parts, i),
      });
    }

    await env.scheduler.tick(); // nothing moved: nothing added
    expect(await bulkJobs(env)).toBe(8);
    expect((await state(env, id)).counters.cursor).toBe(8);

    for (const i of [0, 1, 2]) await finishChunk(env, id, i);
    await env.scheduler.tick();
    expect(await bulkJobs(env)).toBe(8);
    const b = await state(env, id);
    expect(b.counters).toMatchObject({ cursor: 11, admitted: 11, settled: 3, plan_byte: entries[10]!.nextByte });
    for (const i of [8, 9, 10])
      expect((await env.bulk.getJob(chunkJobId(id, i)))!.data.chunk).toEqual(entries[i]!.chunk);
    expect(await env.bulk.getJob(chunkJobId(id, 11))).toBeUndefined();
  });

  it('admits the higher-priority batch first', async () => {
    const env = await setup();
    const low = await plannedBatch(env, 20, { priority: 0 });
    const high = await plannedBatch(env, 20, { priority: 5 });
    await env.scheduler.tick();
    expect((await state(env, high.id)).counters.cursor).toBe(8);
    expect((await state(env, low.id)).counters.cursor).toBe(0);

    for (let i = 0; i < 8; i++) await finishChunk(env, high.id, i);
    await env.scheduler.tick();
    expect((await state(env, high.id)).counters.cursor).toBe(10);
    expect((await state(env, low.id)).counters.cursor).toBe(6);
  });

  it('stands down when a newer leader has advanced the cursor', async () => {
    const env = await setup();
    const { id, entries } = await plannedBatch(env, 40);
    await env.scheduler.tick();
    const epoch = env.scheduler.epoch();
    expect((await state(env, id)).counters.cursor).toBe(8);

    // A newer leader (a higher epoch) admits chunks 8 and 9.
    expect(await env.store.advanceCursor(id, epoch + 1, 8, 10, entries[9]!.nextByte)).toBe('advanced');
    for (const i of [0, 1, 2]) await finishChunk(env, id, i);
    await env.scheduler.tick();
    expect(env.scheduler.epoch()).toBe(0);
    expect((await state(env, id)).counters).toMatchObject({ cursor: 10, admitted: 10 });
  });
});

describe('batch finalisation trigger', () => {
  async function expectOneFinalizeJob(env: Env, id: string): Promise<void> {
    const job = await env.control.getJob(controlJobId.finalize(id));
    expect(job?.id).toBe(`finalize-${id}`);
    expect(job?.name).toBe('finalize');
    expect(job?.data).toEqual({ kind: 'finalize', batchId: id });
    expect(await controlJobs(env)).toBe(1);
  }

  it('expires a batch past its window, withdraws its queued chunks, finalizes once a held one settles', async () => {
    const env = await setup();
    const { id } = await plannedBatch(env, 6, { expiresAt: env.clock.now + 60_000 });
    await env.scheduler.tick();
    expect((await state(env, id)).counters.admitted).toBe(3);
    await finishChunk(env, id, 0);
    // A worker holds chunk 1 (locked, running); chunk 2 waits for a worker that never comes.
    const worker = new Worker(queueName('bulk', 'p'), null, {
      connection: redis.duplicate({ maxRetriesPerRequest: null }),
      prefix: env.config.redis.prefix,
      autorun: false,
    });
    cleanups.push(() => worker.close());
    expect((await worker.getNextJob('held'))?.id).toBe(chunkJobId(id, 1));

    env.clock.now += 60_000;
    await env.scheduler.tick();
    const b = await state(env, id);
    expect(b).toMatchObject({ status: 'finalizing', stop: 'expired' });
    expect(b.timestamps.finalizing_at).toBe(env.clock.now);
    await env.scheduler.tick();
    expect(await env.bulk.getJobState(chunkJobId(id, 2))).toBe('unknown'); // withdrawn
    expect(await env.bulk.getJobState(chunkJobId(id, 1))).toBe('active'); // a held chunk is left to its worker
    expect((await state(env, id)).counters).toMatchObject({ admitted: 3, settled: 2, completed: 2 });
    expect(await env.store.unsettledChunks(id, 3)).toEqual([1]);
    await env.scheduler.tick();
    expect(await controlJobs(env)).toBe(0); // chunk 1 still out

    await env.store.settleChunk(id, 1, { outcome: 'skipped' });
    await env.scheduler.tick();
    await expectOneFinalizeJob(env, id);
    await env.scheduler.tick();
    await env.scheduler.tick();
    await expectOneFinalizeJob(env, id);
  });

  it("withdraws a cancelled batch's queued chunks and finalizes it without a worker", async () => {
    const env = await setup();
    const { id } = await plannedBatch(env, 6);
    await env.scheduler.tick();
    await finishChunk(env, id, 0);
    await env.store.transition(id, ['in_progress'], 'cancelling', { stop: 'cancelled', cancelling_at: env.clock.now });
    await env.scheduler.tick();
    expect((await state(env, id)).counters).toMatchObject({ admitted: 3, settled: 3, completed: 2 });
    expect(await bulkJobs(env)).toBe(0);
    expect(await controlJobs(env)).toBe(0);

    await env.scheduler.tick();
    expect((await state(env, id)).status).toBe('cancelling'); // the finalizer ends it
    await expectOneFinalizeJob(env, id);
  });

  it("settles a stopped batch's chunk whose job is gone (a withdraw that died before settling)", async () => {
    const env = await setup();
    const { id } = await plannedBatch(env, 4);
    await env.scheduler.tick();
    await env.bulk.remove(chunkJobId(id, 0));
    await env.store.transition(id, ['in_progress'], 'cancelling', { stop: 'cancelled', cancelling_at: env.clock.now });
    await env.scheduler.tick();
    expect((await state(env, id)).counters).toMatchObject({ admitted: 2, settled: 2 });
    expect(await env.store.unsettledChunks(id, 2)).toEqual([]);
  });

  it('re-adds the plan job of a batch left validating (a producer that died before queuing it)', async () => {
    const env = await setup();
    const spec = batchSpec(env.clock.now, { input: 'file:///nowhere/in.jsonl', outputPrefix: 'file:///nowhere/out/' });
    const id = spec.id;
    await env.store.create(spec);
    await env.scheduler.tick();
    expect(await controlJobs(env)).toBe(0); // within the grace: the producer's own add may be on its way
    env.clock.now += 10_000;
    await env.scheduler.tick();
    await env.scheduler.tick();
    const job = await env.control.getJob(controlJobId.plan(id));
    expect(job?.data).toEqual({ kind: 'plan', batchId: id });
    expect(await controlJobs(env)).toBe(1);
  });

  it('moves a batch whose every chunk settled to finalizing and adds its finalize job', async () => {
    const env = await setup();
    const { id } = await plannedBatch(env, 6);
    await env.scheduler.tick();
    for (const i of [0, 1]) await finishChunk(env, id, i);
    await env.scheduler.tick();
    expect((await state(env, id)).status).toBe('in_progress');
    await finishChunk(env, id, 2);
    await env.scheduler.tick();
    const b = await state(env, id);
    expect(b.status).toBe('finalizing');
    expect(b.stop).toBeNull();
    expect(b.timestamps.finalizing_at).toBe(env.clock.now);
    await expectOneFinalizeJob(env, id);
  });

  it('closes a finished batch left in the open index', async () => {
    const env = await setup();
    const { id } = await plannedBatch(env, 2);
    await env.store.transition(id, ['in_progress'], 'completed');
    await env.scheduler.tick();
    expect(await env.store.openIds()).toEqual([]);
  });
});
