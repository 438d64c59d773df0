/**
 * The bulk lane on the real queues and real Redis, with file:// storage: chunks
 * run into their parts and settle once in the batch state; a stopped batch's
 * chunks are skipped; a missing input fails the chunk for good; a draining
 * worker hands its chunk back without spending an attempt.
 */
import { batchSpec } from '../helpers/batch-spec.ts';
import { readFile } from 'node:fs/promises';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchStore, newBatchId, chunkJobFor } from '../../common/batch/batch-state.ts';
import type { Config } from '../../common/config.ts';
import { segmentPartUris, type Chunk, type ChunkJob } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { closeRedis, createRedis } from '../../common/redis.ts';
import { createFileStorage, StorageError } from '../../common/storage/index.ts';
import { chunkJobId, queueName } from '../../common/topology.ts';
import type { ModelBackend } from '../../gpu-worker/backends/backend.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { decideFailure, startBulkLane } from '../../gpu-worker/bulk/bulk-lane.ts';
import { createWorkerMetrics } from '../../gpu-worker/metrics.ts';
import { startWorker, type RunningWorker } from '../../gpu-worker/worker.ts';
import { planBatch } from '../../producer/batch/planner.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { slowBackend } from '../helpers/test-backends.ts';
import { exists, readPart, sentimentLine, tempDir, writeInput, type TempDir } from '../unit/bulk/fixtures.ts';
import { until } from '../helpers/until.ts';

const poolYaml = (bulk: string) => `pools:\n  - name: p\n    backend: echo\n    lanes: { bulk: ${bulk} }\n`;
const storage = createFileStorage();

let config: Config;
let redis: Redis;
let store: BatchStore;
let queue: Queue;
let dir: TempDir;
let workers: RunningWorker[];

function setUp(bulk = '{ concurrency: 2, batchSize: 2 }'): void {
  config = testConfig(poolYaml(bulk));
  queue = new Queue(queueName('bulk', 'p'), { connection: redis, prefix: config.redis.prefix });
  store = new BatchStore(redis, config.redis.prefix);
}

beforeEach(async () => {
  redis = new Redis(REDIS_URL);
  dir = await tempDir();
  workers = [];
  setUp();
});
afterEach(async () => {
  await Promise.all(workers.map((w) => w.close(0)));
  await queue.close();
  await deleteKeys(redis, config.redis.prefix);
  redis.disconnect();
  await dir.remove();
});

async function worker(backend: ModelBackend = createEchoBackend()): Promise<RunningWorker> {
  const w = await startWorker(config, { logger: silentLogger(), backend });
  workers.push(w);
  return w;
}

interface TestBatch {
  batchId: string;
  outputPrefix: string;
  jobs: ChunkJob[];
}

/** A batch in_progress over `lines`, planned into chunks of `chunkLines`, its chunk jobs built (not added). */
async function batch(lines: string[], chunkLines: number): Promise<TestBatch> {
  const now = Date.now();
  const batchId = newBatchId(now);
  const input = await writeInput(dir, `${batchId}.jsonl`, lines);
  const outputPrefix = `${dir.uri(batchId)}/`;
  const spec = batchSpec(now, { id: batchId, input: input.uri, outputPrefix, tenant: 'default' });
  await store.create(spec);
  const chunks: Chunk[] = [];
  await planBatch(storage, input.uri, { endpoint: '/v1/infer', model: 'p', chunkLines }, (c) => {
    chunks.push(c);
  });
  await store.transition(batchId, ['validating'], 'in_progress', { chunks: chunks.length, total: lines.length });
  const jobs = chunks.map((chunk) => chunkJobFor(spec, chunk));
  return { batchId, outputPrefix, jobs };
}

/** Adds a chunk job as the scheduler does: deterministic id, 5 attempts, exponential backoff. */
async function add(data: unknown, jobId: string): Promise<void> {
  await queue.add('chunk', data, { jobId, attempts: 5, backoff: { type: 'exponential', delay: 50 } });
}

/** Waits until the job completes or fails, and returns it. */
async function finished(jobId: string): Promise<Job> {
  return until(async () => {
    const state = await queue.getJobState(jobId);
    return state === 'completed' || state === 'failed' ? queue.getJob(jobId) : undefined;
  });
}

const lineIds = (rows: unknown[] | null): string[] => (rows ?? []).map((r) => (r as { custom_id: string }).custom_id);

describe('bulk lane', () => {
  it('runs a batch: parts with the right lines, exact counters, ChunkResult as return value', async () => {
    const lines = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((id) => sentimentLine(id, `text ${id}`));
    lines[4] = JSON.stringify({ custom_id: 'e', method: 'GET' }); // an invalid request: goes to the error part
    const b = await batch(lines, 3);
    expect(b.jobs.map((j) => j.chunk.lines)).toEqual([3, 3, 1]);
    await worker();
    for (const job of b.jobs) await add(job, chunkJobId(b.batchId, job.chunk.index));

    const expected = [
      { completed: 3, failed: 0 },
      { completed: 2, failed: 1 },
      { completed: 1, failed: 0 },
    ];
    for (const [i, job] of b.jobs.entries()) {
      const done = await finished(chunkJobId(b.batchId, i));
      expect(await done.getState()).toBe('completed');
      expect(done.returnvalue).toEqual({ status: 'done', ...expected[i], processedLines: job.chunk.lines });
      expect((await readPart(job.outputPart))?.length).toBe(expected[i]!.completed);
      expect((await readPart(job.errorPart))?.length).toBe(expected[i]!.failed);
    }
    expect(lineIds(await readPart(b.jobs[1]!.errorPart))).toEqual(['e']);
    const state = await store.get(b.batchId);
    expect(state?.counters).toMatchObject({ completed: 6, failed: 1, settled: 3 });
    const done = await store.doneChunks(b.batchId);
    expect([0, 1, 2].map(done)).toEqual([true, true, true]);
  });

  it('settles a chunk once when its job runs twice; parts and counters stay as they were', async () => {
    const b = await batch(
      ['a', 'b'].map((id) => sentimentLine(id, id)),
      10,
    );
    const job = b.jobs[0]!;
    await worker();
    const id = chunkJobId(b.batchId, 0);
    await add(job, id);
    expect((await finished(id)).returnvalue).toMatchObject({ status: 'done', completed: 2 });
    const parts = await Promise.all([readFile(new URL(job.outputPart)), readFile(new URL(job.errorPart))]);
    const before = (await store.get(b.batchId))?.counters;

    await add(job, `${id}-again`);
    const again = await finished(`${id}-again`);
    expect(await again.getState()).toBe('completed');
    expect(again.returnvalue).toEqual({ status: 'already_done', completed: 2, failed: 0, processedLines: 2 });
    expect((await store.get(b.batchId))?.counters).toEqual(before);
    expect(before).toMatchObject({ completed: 2, failed: 0, settled: 1 });
    expect(await Promise.all([readFile(new URL(job.outputPart)), readFile(new URL(job.errorPart))])).toEqual(parts);
  });

  it('skips a chunk of a batch that is no longer in progress, without writing parts', async () => {
    const b = await batch(
      ['a', 'b'].map((id) => sentimentLine(id, id)),
      10,
    );
    await store.transition(b.batchId, ['in_progress'], 'cancelling', { stop: 'cancelled' });
    await worker();
    const id = chunkJobId(b.batchId, 0);
    await add(b.jobs[0], id);
    const job = await finished(id);
    expect(await job.getState()).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'skipped' });
    expect(await exists(b.jobs[0]!.outputPart)).toBe(false);
    expect(await exists(b.jobs[0]!.errorPart)).toBe(false);
    expect((await store.get(b.batchId))?.counters).toMatchObject({ settled: 1, completed: 0, failed: 0 });
    expect((await store.doneChunks(b.batchId))(0)).toBe(false);
  });

  it('fails a chunk whose input is missing for good: settled failed, no retries', async () => {
    const b = await batch(
      ['a', 'b'].map((id) => sentimentLine(id, id)),
      10,
    );
    const missing = { ...b.jobs[0]!, chunk: { ...b.jobs[0]!.chunk, input: dir.uri('missing.jsonl') } };
    await worker();
    const id = chunkJobId(b.batchId, 0);
    await add(missing, id);
    const job = await finished(id);
    expect(await job.getState()).toBe('failed');
    expect(job.failedReason).toMatch(/^not_found: /);
    expect(job.attemptsMade).toBe(1);
    expect((await queue.getFailed()).map((j) => j.id)).toEqual([id]);
    expect((await store.chunkErrors(b.batchId)).get(0)).toMatch(/^not_found: /);
    expect((await store.get(b.batchId))?.counters).toMatchObject({ settled: 1, completed: 0, failed: 0 });
  });

  it('fails an invalid chunk job for good, naming the bad field, and settles its chunk', async () => {
    const b = await batch([sentimentLine('a', 'a')], 10);
    await worker();
    const id = chunkJobId(b.batchId, 0);
    await add({ ...b.jobs[0], chunk: { ...b.jobs[0]!.chunk, lines: -1 } }, id);
    const job = await finished(id);
    expect(await job.getState()).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/^bad_request: invalid chunk job: chunk\.lines: /);
    expect((await store.chunkErrors(b.batchId)).get(0)).toBe(job.failedReason);
  });

  it('hands a chunk back when drained mid-chunk, without spending an attempt; another worker finishes it', async () => {
    setUp('{ concurrency: 1, batchSize: 1 }');
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const b = await batch(
      ids.map((id) => sentimentLine(id, id)),
      10,
    );
    const seen = { started: [] as string[], aborted: 0 };
    const first = await worker(slowBackend(100, seen));
    const id = chunkJobId(b.batchId, 0);
    await add(b.jobs[0], id);
    await until(async () => (seen.started.length >= 2 ? true : undefined));

    await first.close(20);
    // Stopped mid-chunk (slowBackend counts every listener on the chunk's signal as aborted).
    expect(seen.aborted).toBeGreaterThan(0);
    expect(seen.started.length).toBeLessThan(ids.length);
    expect(['delayed', 'waiting']).toContain(await queue.getJobState(id));
    expect((await queue.getJob(id))?.attemptsMade).toBe(0);
    expect(await exists(b.jobs[0]!.outputPart)).toBe(false);
    expect((await store.get(b.batchId))?.counters.settled).toBe(0);

    await worker();
    const job = await finished(id);
    expect(job.returnvalue).toMatchObject({ status: 'done', completed: 6, failed: 0 });
    expect(job.attemptsMade).toBe(1); // the completing run is the only attempt counted
    // What the drained run finished is kept as a segment; the last part holds the rest.
    const segs = await store.chunkSegments(b.batchId, 0);
    expect(segs).toHaveLength(1);
    const uris = [
      segmentPartUris(b.jobs[0]!, segs[0]!.start, segs[0]!.end),
      segmentPartUris(b.jobs[0]!, segs[0]!.end, b.jobs[0]!.chunk.end),
    ];
    const all = (await Promise.all(uris.flatMap((u) => [readPart(u.outputPart), readPart(u.errorPart)]))).flatMap(
      lineIds,
    );
    expect(all.sort()).toEqual(ids);
    expect((await store.get(b.batchId))?.counters).toMatchObject({ completed: 6, failed: 0, settled: 1 });
  });

  it('retries a chunk on a retryable storage error, and settles it failed on the last attempt', async () => {
    const b = await batch([sentimentLine('a', 'a')], 10);
    const connection = createRedis(config.redis, 'worker');
    const metrics = createWorkerMetrics({});
    const outage = new StorageError('unavailable', 'storage is down');
    const lane = startBulkLane({
      prefix: config.redis.prefix,
      pool: 'p',
      workerId: 'w1',
      settings: { ...config.pools[0]!.lanes.bulk, concurrency: 1 },
      connection,
      backend: createEchoBackend(),
      storage: { ...storage, stat: () => Promise.reject(outage) },
      store,
      metrics,
      logger: silentLogger(),
    });
    try {
      const id = chunkJobId(b.batchId, 0);
      await add(b.jobs[0], id);
      const job = await finished(id);
      expect(await job.getState()).toBe('failed');
      expect(job.attemptsMade).toBe(5);
      expect(job.failedReason).toBe('storage is down');
      expect((await store.chunkErrors(b.batchId)).get(0)).toBe('unavailable: storage is down');
      expect((await store.get(b.batchId))?.counters).toMatchObject({ settled: 1, completed: 0, failed: 0 });
      const runs = (await metrics.bulkChunks.get()).values.map((v) => [v.labels.outcome, v.value]);
      expect(Object.fromEntries(runs)).toEqual({ retried: 4, failed: 1 });
    } finally {
      await lane.close(0);
      await closeRedis(connection);
    }
  });
});

describe('decideFailure', () => {
  it.each([
    ['not_found', 0, 5, { kind: 'unrecoverable', reason: 'not_found: x' }],
    ['permission_denied', 0, 5, { kind: 'unrecoverable', reason: 'permission_denied: x' }],
    ['unavailable', 0, 5, { kind: 'retry', reason: 'unavailable: x', settle: false }],
    ['unavailable', 4, 5, { kind: 'retry', reason: 'unavailable: x', settle: true }],
    ['cancelled', 0, 1, { kind: 'retry', reason: 'cancelled: x', settle: true }],
  ] as const)('storage %s on attempt %i of %i', (code, attemptsMade, attempts, expected) => {
    expect(decideFailure(new StorageError(code, 'x'), attemptsMade, attempts)).toEqual(expected);
  });

  it('retries any other error, naming it internal', () => {
    expect(decideFailure(new Error('redis gone'), 1, 5)).toEqual({
      kind: 'retry',
      reason: 'internal: redis gone',
      settle: false,
    });
  });
});
