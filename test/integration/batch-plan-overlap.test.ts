/**
 * Planning overlapped with admission, on a real Redis and file:// storage:
 * the plan job publishes pieces while a gated input holds the rest back, and
 * the scheduler admits the published chunks before the total is known; then
 * planning ends (every chunk admitted once, in order), fails (the batch ends
 * failed, saying how many chunks had been admitted), or the batch is
 * cancelled mid-way (finalisation waits for the end of planning).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, batchFiles, type BatchState } from '../../common/batch/batch-state.ts';
import { toApiBatch } from '../../common/contracts/batch-api.ts';
import { chunkJobSchema, controlJobId } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage, StorageError, type Storage } from '../../common/storage/index.ts';
import { batchControlQueue, chunkJobId } from '../../common/topology.ts';
import { planJob } from '../../common/batch/control-jobs.ts';
import { runPlanJob, type PlanJobOutcome } from '../../producer/batch/plan-job.ts';
import { batchSpec, tickedScheduler, type SchedulerEnv } from '../helpers/batch-scheduler.ts';
import { REDIS_URL } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

const yaml = `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000 }
batch: { windowPerPool: 8, admitEveryMs: 60000 }
pools: [{ name: p, backend: echo }]
`;

const LINES = 40; // 2 a chunk: 20 chunks, pieces [0] [1] [2,3] [4..7] [8..15] [16..19]

let dir: string;
let redis: Redis;
let inputBytes: Buffer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-overlap-'));
  redis = new Redis(REDIS_URL);
  const rows = Array.from({ length: LINES }, (_, i) =>
    JSON.stringify({
      custom_id: `r-${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: `line ${i}` } },
    }),
  );
  inputBytes = Buffer.from(`${rows.join('\n')}\n`);
  await writeFile(join(dir, 'input.jsonl'), inputBytes);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  redis.disconnect();
});

/** Byte offset where line `n` (1-based) starts. */
const lineStart = (n: number): number => {
  let at = 0;
  for (let i = 1; i < n; i++) at = inputBytes.indexOf(10, at) + 1;
  return at;
};

/**
 * file:// storage whose input read hands out the lines before line 19 (chunks 0–7 and so the
 * pieces up to [4..7]), then waits for `release`; `rest: 'fail'` then fails the read for good.
 */
function gatedStorage(rest: 'serve' | 'fail') {
  const base = createFileStorage();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const storage: Storage = {
    ...base,
    read: async (uri, opts) => {
      if (!uri.endsWith('/input.jsonl')) return base.read(uri, opts);
      const cut = lineStart(19);
      return Readable.from(
        (async function* () {
          yield inputBytes.subarray(0, cut);
          await gate;
          if (rest === 'fail') throw new StorageError('permission_denied', 'access revoked mid-read', { uri });
          yield inputBytes.subarray(cut);
        })(),
      );
    },
  };
  return { storage, release };
}

async function setup(rest: 'serve' | 'fail') {
  const env = await tickedScheduler(redis, yaml);
  cleanups.push(() => env.close());
  const { storage, release } = gatedStorage(rest);
  const out = `${pathToFileURL(join(dir, `out-${env.config.redis.prefix.replace(/\W/g, '')}`)).href}/`;
  const spec = batchSpec(env.clock.now, { input: pathToFileURL(join(dir, 'input.jsonl')).href, outputPrefix: out });
  await env.store.create(spec);
  const store = new BatchStore(redis, env.config.redis.prefix);
  const planning: Promise<PlanJobOutcome> = runPlanJob(
    spec.id,
    {
      batch: { chunkLines: 2, chunkBytes: 1 << 20 },
      store,
      storage,
      logger: silentLogger(),
      now: () => env.clock.now,
      statusPollMs: 20,
    },
    { lastAttempt: true },
  );
  cleanups.push(async () => {
    release();
    await planning.catch(() => undefined);
  });
  const state = async (): Promise<BatchState> => (await env.store.get(spec.id))!;
  // Wait for the pieces before the gate: chunks 0–7.
  await until(async () => ((await state()).counters.plan_chunks >= 8 ? true : undefined), 2000);
  return { env, spec, planning, release, state };
}

/** What a gpu-worker would do with a chunk: the job goes, the chunk settles. */
async function finishChunk(env: SchedulerEnv, id: string, index: number): Promise<void> {
  await env.bulk.remove(chunkJobId(id, index));
  await env.store.settleChunk(id, index, { outcome: 'done', completed: 2, failed: 0 });
}

describe('planning overlapped with admission', () => {
  it('admits published chunks before planning ends, with the total reported only once known', async () => {
    const { env, spec, planning, release, state } = await setup('serve');
    const during = await state();
    expect(during).toMatchObject({ status: 'in_progress', planned: false });
    expect(during.counters).toMatchObject({ plan_chunks: 8, total: 0, chunks: 0 });
    expect(toApiBatch(during).request_counts.total).toBe(0); // unknown yet: OpenAI's 0, never a partial count

    await env.scheduler.tick();
    expect((await state()).counters).toMatchObject({ cursor: 8, admitted: 8 });
    const admitted = new Set<number>();
    for (let i = 0; i < 8; i++) {
      const job = await env.bulk.getJob(chunkJobId(spec.id, i));
      expect(chunkJobSchema.parse(job!.data).chunk.index).toBe(i);
      admitted.add(i);
    }
    for (let i = 0; i < 4; i++) await finishChunk(env, spec.id, i);
    await env.scheduler.tick(); // nothing more published: held, not finalised
    expect((await state()).counters.cursor).toBe(8);
    expect(await env.control.getJob(controlJobId.finalize(spec.id))).toBeUndefined();

    release();
    expect(await planning).toEqual({ outcome: 'planned', total: LINES, chunks: 20 });
    const planned = await state();
    expect(planned).toMatchObject({ status: 'in_progress', planned: true });
    expect(planned.counters).toMatchObject({ total: LINES, chunks: 20, plan_chunks: 20 });
    expect((await readFile(new URL(batchFiles(spec.outputPrefix).plan), 'utf8')).split('\n').length).toBe(21);

    for (let tick = 0; tick < 10 && (await state()).counters.settled < 20; tick++) {
      await env.scheduler.tick();
      const { cursor } = (await state()).counters;
      for (let i = 0; i < cursor; i++) {
        if ((await env.bulk.getJob(chunkJobId(spec.id, i))) === undefined) continue;
        expect(admitted.has(i) && i >= 8).toBe(false); // each admitted once
        admitted.add(i);
        await finishChunk(env, spec.id, i);
      }
      for (let i = 4; i < 8; i++) await env.store.settleChunk(spec.id, i, { outcome: 'done', completed: 2, failed: 0 });
    }
    expect([...admitted].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await env.scheduler.tick();
    expect((await state()).status).toBe('finalizing');
    expect(await env.control.getJob(controlJobId.finalize(spec.id))).toBeDefined();
  });

  it('a planning failure after chunks were admitted ends the batch failed, saying so', async () => {
    const { env, spec, planning, release, state } = await setup('fail');
    await env.scheduler.tick();
    await finishChunk(env, spec.id, 0);
    release();
    const outcome = await planning;
    expect(outcome).toMatchObject({ outcome: 'failed', error: { code: 'input_permission_denied' } });
    const failed = await state();
    expect(failed.status).toBe('failed');
    expect(failed.errors[0]!.message).toMatch(/after 8 chunk\(s\) had been admitted/);
    expect(await env.store.openIds()).not.toContain(spec.id);
    expect(await env.store.runnable(spec.id)).toBe(false); // queued chunks are skipped by workers
    await expect(createFileStorage().stat(batchFiles(spec.outputPrefix).plan)).rejects.toThrow(StorageError);
  });

  it('a batch cancelled while planning is finalised only once planning has ended', async () => {
    const { env, spec, planning, release, state } = await setup('serve');
    await env.scheduler.tick();
    await finishChunk(env, spec.id, 0);
    await env.store.transition(spec.id, ['in_progress'], 'cancelling', { stop: 'cancelled', cancelling_at: 1 });
    await env.scheduler.tick(); // withdraws the queued chunks 1–7
    await env.scheduler.tick(); // drained, but the plan is not whole: held
    expect((await state()).counters).toMatchObject({ settled: 8, admitted: 8 });
    expect(await env.control.getJob(controlJobId.finalize(spec.id))).toBeUndefined();
    release();
    expect(await planning).toEqual({ outcome: 'planned', total: LINES, chunks: 20 });
    expect(await state()).toMatchObject({ status: 'cancelling', planned: true });
    await env.scheduler.tick();
    expect(await env.control.getJob(controlJobId.finalize(spec.id))).toBeDefined();
  });

  it('a plan piece that cannot be written fails the batch on its output side', async () => {
    const env = await tickedScheduler(redis, yaml);
    cleanups.push(() => env.close());
    const base = createFileStorage();
    const storage: Storage = {
      ...base,
      writeIfAbsent: async (uri, body, opts) => {
        if (uri.includes('/parts/plan-')) throw new StorageError('permission_denied', 'no write access', { uri });
        return base.writeIfAbsent(uri, body, opts);
      },
    };
    const out = `${pathToFileURL(join(dir, 'out-denied')).href}/`;
    const spec = batchSpec(env.clock.now, { input: pathToFileURL(join(dir, 'input.jsonl')).href, outputPrefix: out });
    await env.store.create(spec);
    const deps = { batch: { chunkLines: 2, chunkBytes: 1 << 20 }, store: env.store, storage, logger: silentLogger() };
    const outcome = await runPlanJob(spec.id, { ...deps, now: () => env.clock.now }, { lastAttempt: false });
    expect(outcome).toMatchObject({
      outcome: 'failed',
      error: { code: 'output_permission_denied', param: 'output_location' },
    });
    expect((await env.store.get(spec.id))!.status).toBe('failed');
  });
  it('a plan job that died for good mid-plan fails the batch, rather than holding it in planning', async () => {
    const { env, spec, state } = await setup('serve');
    await env.scheduler.tick();
    // The plan job's process was killed until BullMQ's stall limit: the job failed, the batch never heard.
    const { name, data, opts } = planJob(spec.id);
    await env.control.add(name, data, { ...opts, attempts: 1 });
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const worker = new Worker(
      batchControlQueue,
      () => {
        throw new UnrecoverableError('job stalled more than allowable limit');
      },
      { connection, prefix: env.config.redis.prefix },
    );
    const job = (await env.control.getJob(controlJobId.plan(spec.id)))!;
    await until(async () => ((await job.isFailed()) ? true : undefined), 2000);
    await worker.close();
    connection.disconnect();
    expect((await state()).status).toBe('in_progress');

    await env.scheduler.tick();
    const failed = await state();
    expect(failed.status).toBe('failed');
    expect(failed.errors[0]).toMatchObject({
      code: 'planning_failed',
      message: 'planning did not finish: job stalled more than allowable limit',
    });
    expect(await env.store.openIds()).not.toContain(spec.id);
  });
});
