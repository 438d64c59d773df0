/**
 * A chunk job that BullMQ fails by its stalled limit, on a real Redis and file:// storage: its
 * worker took it and never renewed the lock (a process that died on the line, every time), so
 * BullMQ's stalled check fails the job outside the bulk lane, which never settles the chunk. The
 * scheduler leader's reconciliation settles it failed with the job's reason, the batch then
 * finalises, and the chunk's lines are in the error file as chunk_failed with that reason.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chunkJobSchema, controlJobId } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { queueName } from '../../common/topology.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { runChunk } from '../../gpu-worker/bulk/chunk-runner.ts';
import { finalizeBatch } from '../../producer/batch/finalizer.ts';
import { plannedBatch, tickedScheduler } from '../helpers/batch-scheduler.ts';
import { REDIS_URL } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

const yaml = `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000 }
batch: { windowPerPool: 8, admitEveryMs: 60000 }
pools: [{ name: p, backend: echo }]
`;

const storage = createFileStorage();
let dir: string;
let redis: Redis;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-stalled-'));
  redis = new Redis(REDIS_URL);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  redis.disconnect();
});

describe('a chunk job failed by BullMQ’s stalled limit', () => {
  it('is settled failed by the leader, and its batch ends with the lines in the error file', async () => {
    const env = await tickedScheduler(redis, yaml);
    cleanups.push(() => env.close());
    const { id } = await plannedBatch(env, dir, 4); // 2 lines a chunk: chunks 0 and 1
    await env.scheduler.tick();
    expect((await env.store.get(id))!.counters).toMatchObject({ admitted: 2, settled: 0 });

    // A worker that takes both chunk jobs by hand: chunk 0 runs to its end, chunk 1 is held without
    // ever renewing its lock, as by a process that died on it.
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const prefix = env.config.redis.prefix;
    const taker = new Worker(queueName('bulk', 'p'), null, { connection, prefix, autorun: false, lockDuration: 600 });
    const token0 = randomUUID();
    const job0 = await until(async () => (await taker.getNextJob(token0, { block: false })) ?? undefined, 10_000);
    const chunk0 = chunkJobSchema.parse(job0.data);
    expect(chunk0.chunk.index).toBe(0);
    const result = await runChunk(chunk0, { storage, backend: createEchoBackend() });
    await env.store.settleChunk(id, 0, { outcome: 'done', completed: result.completed, failed: result.failed });
    await job0.moveToCompleted(result, token0, false);
    // Another worker's stalled check, BullMQ's default limit (maxStalledCount 1). In BullMQ 6 a job past
    // the limit goes back to wait marked with a deferred failure, and the next worker to take it fails
    // it (UnrecoverableError, 'job stalled more than allowable limit') without running it.
    const checker = new Worker(queueName('bulk', 'p'), null, {
      connection: connection.duplicate({ maxRetriesPerRequest: null }),
      prefix,
      autorun: false,
      lockDuration: 600,
      stalledInterval: 200,
      maxStalledCount: 1,
    });
    const runner = new Worker(
      queueName('bulk', 'p'),
      () => {
        throw new Error('a job past its stalled limit ran');
      },
      { connection: connection.duplicate({ maxRetriesPerRequest: null }), prefix, autorun: false },
    );
    cleanups.push(async () => {
      await runner.close(true);
      await checker.close(true);
      await taker.close(true);
      connection.disconnect();
    });
    void checker.startStalledCheckTimer();
    let jobId = '';
    for (let stalls = 1; stalls <= 2; stalls++) {
      const token = randomUUID();
      const job1 = await until(async () => (await taker.getNextJob(token, { block: false })) ?? undefined, 10_000);
      expect(chunkJobSchema.parse(job1.data).chunk.index).toBe(1);
      jobId = job1.id!;
      await until(async () => ((await env.bulk.getJob(jobId))?.stalledCounter === stalls ? true : undefined), 10_000);
    }
    void runner.run();
    await until(async () => ((await env.bulk.getJobState(jobId)) === 'failed' ? true : undefined), 10_000);
    const failedJob = (await env.bulk.getJob(jobId))!;
    expect(failedJob.failedReason).toMatch(/stalled more than allowable limit/);
    await runner.close(true);
    await checker.close(true);
    expect((await env.store.get(id))!).toMatchObject({ status: 'in_progress', counters: { settled: 1 } });

    // The leader's next reconciliation settles it failed; the pass after finalises the batch.
    env.clock.now += 5000;
    await env.scheduler.tick();
    expect((await env.store.chunkErrors(id)).get(1)).toBe(`worker_lost: ${failedJob.failedReason}`);
    await env.scheduler.tick();
    expect((await env.store.get(id))!.status).toBe('finalizing');
    expect(await env.control.getJob(controlJobId.finalize(id))).toBeDefined();

    const ended = await finalizeBatch(id, {
      store: env.store,
      storage,
      logger: silentLogger(),
      now: () => env.clock.now,
    });
    expect(ended).toMatchObject({ outcome: 'ended', status: 'completed' });
    const state = (await env.store.get(id))!;
    const read = async (uri: string | null): Promise<{ custom_id: string; error?: unknown }[]> =>
      (await readFile(new URL(uri!), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { custom_id: string; error?: unknown });
    const output = await read(state.files.output);
    const errors = await read(state.files.error);
    const name = output[0]!.custom_id.replace(/-\d+$/, '');
    expect(output.map((l) => l.custom_id)).toEqual([`${name}-0`, `${name}-1`]);
    expect(errors.map((l) => l.custom_id)).toEqual([`${name}-2`, `${name}-3`]);
    for (const l of errors) {
      expect(l.error).toEqual({
        code: 'chunk_failed',
        message: `chunk 1 failed: worker_lost: ${failedJob.failedReason}`,
      });
    }
    expect(state.counters).toMatchObject({ total: 4, completed: 2, failed: 2, not_run: 2 });
  });
});
