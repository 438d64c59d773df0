/**
 * Chunk preemption end to end, on real Redis, real BullMQ queues, real bulk
 * lanes and file:// storage: the scheduler's call (requestPreemption) makes
 * running chunks yield at a record boundary; what they finished is kept as a
 * segment, the rest runs later, and finalisation delivers every request
 * exactly once with exact counts, through crashes at the awkward points and
 * two runs of one chunk.
 */
import { batchSpec } from '../helpers/batch-spec.ts';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchStore, batchFiles, newBatchId, type BatchSpec, chunkJobFor } from '../../common/batch/batch-state.ts';
import { readPlan } from '../../common/batch/plan-file.ts';
import type { Config } from '../../common/config.ts';
import { chunkJobSchema, segmentPartUris, type ChunkJob } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { preemptKeys, requestPreemption } from '../../common/preemption.ts';
import { closeRedis, createRedis, type RedisClient } from '../../common/redis.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { chunkJobId, queueName } from '../../common/topology.ts';
import type { ModelBackend } from '../../gpu-worker/backends/backend.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { startBulkLane, type BulkLaneDeps } from '../../gpu-worker/bulk/bulk-lane.ts';
import { runChunk } from '../../gpu-worker/bulk/chunk-runner.ts';
import { afterSegment, plannedRange } from '../../gpu-worker/bulk/segments.ts';
import { createWorkerMetrics, type WorkerMetrics } from '../../gpu-worker/metrics.ts';
import type { Lane } from '../../gpu-worker/realtime-lane.ts';
import { finalizeBatch } from '../../producer/batch/finalizer.ts';
import { runPlanJob } from '../../producer/batch/plan-job.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { slowBackend } from '../helpers/test-backends.ts';
import { until } from '../helpers/until.ts';
import { sentimentLine, tempDir, type TempDir } from '../unit/bulk/fixtures.ts';

const storage = createFileStorage();
const logger = silentLogger();

let config: Config;
let redis: Redis;
let store: BatchStore;
let queue: Queue;
let dir: TempDir;
let lanes: Array<{ lane: Lane; connection: RedisClient }>;

beforeEach(async () => {
  config = testConfig('pools:\n  - name: p\n    backend: echo\n');
  redis = new Redis(REDIS_URL);
  store = new BatchStore(redis, config.redis.prefix);
  queue = new Queue(queueName('bulk', 'p'), { connection: redis, prefix: config.redis.prefix });
  dir = await tempDir();
  lanes = [];
});
afterEach(async () => {
  for (const { lane, connection } of lanes) {
    await lane.close(0);
    await closeRedis(connection);
  }
  await queue.close();
  await deleteKeys(redis, config.redis.prefix);
  redis.disconnect();
  await dir.remove();
});

interface LaneOptions {
  backend?: ModelBackend;
  concurrency?: number;
  batchSize?: number;
  store?: BulkLaneDeps['store'];
}

/** A bulk lane of its own, as one worker process runs it. */
function lane(opts: LaneOptions = {}): WorkerMetrics {
  const connection = createRedis(config.redis, 'worker');
  const metrics = createWorkerMetrics({});
  const l = startBulkLane({
    prefix: config.redis.prefix,
    pool: 'p',
    workerId: `w${lanes.length}`,
    settings: {
      ...config.pools[0]!.lanes.bulk,
      concurrency: opts.concurrency ?? 1,
      batchSize: opts.batchSize ?? 2,
      preemptDelayMs: 100,
    },
    connection,
    backend: opts.backend ?? createEchoBackend(),
    storage,
    store: opts.store ?? store,
    metrics,
    logger,
  });
  lanes.push({ lane: l, connection });
  return metrics;
}

/** Waits until `n` lanes listen on the pool's preemption channel. */
async function listening(n: number): Promise<void> {
  const channel = preemptKeys(config.redis.prefix, 'p').channel;
  await until(async () => {
    const [, count] = (await redis.pubsub('NUMSUB', channel)) as [string, number];
    return count >= n ? true : undefined;
  });
}

interface TestBatch {
  spec: BatchSpec;
  jobs: ChunkJob[];
  ids: string[];
}

/** A batch of `n` sentiment requests, planned (plan file and all) into chunks of `chunkLines`. */
async function batch(n: number, chunkLines: number): Promise<TestBatch> {
  const now = Date.now();
  const id = newBatchId(now);
  const ids = Array.from({ length: n }, (_, i) => `${id}-r${i}`);
  const inputUri = dir.uri(`${id}.jsonl`);
  await writeFile(new URL(inputUri), ids.map((c) => `${sentimentLine(c, `text ${c}`)}\n`).join(''));
  const spec = batchSpec(now, { id, input: inputUri, outputPrefix: `${dir.uri(id)}/`, tenant: 'default' });
  await store.create(spec);
  const planned = await runPlanJob(
    id,
    { batch: { chunkLines, chunkBytes: 1 << 20 }, store, storage, logger, now: Date.now },
    { lastAttempt: true },
  );
  expect(planned.outcome).toBe('planned');
  const files = batchFiles(spec.outputPrefix);
  const jobs: ChunkJob[] = [];
  for await (const chunk of readPlan(storage, files.plan)) jobs.push(chunkJobFor(spec, chunk));
  await store.setFields(id, { cursor: jobs.length, admitted: jobs.length });
  return { spec, jobs, ids };
}

async function add(job: ChunkJob): Promise<string> {
  const id = chunkJobId(job.batchId, job.chunk.index);
  await queue.add('chunk', job, { jobId: id, attempts: 5, backoff: { type: 'fixed', delay: 10 } });
  return id;
}

async function finished(jobId: string, timeoutMs = 15_000): Promise<Job> {
  return until(async () => {
    const state = await queue.getJobState(jobId);
    return state === 'completed' || state === 'failed' ? queue.getJob(jobId) : undefined;
  }, timeoutMs);
}

/** Finalises the batch and returns the custom_ids of its output and error files. */
async function finalise(b: TestBatch): Promise<{ output: string[]; errors: string[] }> {
  await store.transition(b.spec.id, ['in_progress'], 'finalizing', { finalizing_at: Date.now() });
  const result = await finalizeBatch(b.spec.id, { store, storage, logger, now: Date.now });
  expect(result.outcome).toBe('ended');
  const files = batchFiles(b.spec.outputPrefix);
  const ids = async (uri: string): Promise<string[]> =>
    (await readFile(new URL(uri), 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
  return { output: await ids(files.output), errors: await ids(files.error) };
}

const outcomes = async (m: WorkerMetrics): Promise<Record<string, number>> =>
  Object.fromEntries((await m.bulkChunks.get()).values.map((v) => [String(v.labels.outcome), v.value]));

describe('chunk preemption', () => {
  it('keeps what a preempted chunk finished, runs the rest later, and delivers every request once', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    const metrics = lane({ backend: slowBackend(20, seen), batchSize: 2 });
    await listening(1);
    const b = await batch(30, 30);
    const jobId = await add(b.jobs[0]!);
    await until(async () => (seen.started.length >= 8 ? true : undefined));

    await requestPreemption(redis, config.redis.prefix, 'p', 1, 'objective_missed');
    const job = await finished(jobId);
    expect(await job.getState()).toBe('completed');
    expect(job.returnvalue).toEqual({ status: 'done', completed: 30, failed: 0, processedLines: 30 });
    expect(await outcomes(metrics)).toEqual({ preempted: 1, done: 1 });
    expect(job.attemptsMade).toBe(1); // the yield spent no attempt

    // One segment recorded, of the lines finished before the yield; its parts hold them.
    const [segment, ...more] = await store.chunkSegments(b.spec.id, 0);
    expect(more).toEqual([]);
    expect(segment!.lines).toBeGreaterThanOrEqual(6);
    expect(segment!.lines).toBeLessThan(30);
    const segParts = segmentPartUris(b.jobs[0]!, segment!.start, segment!.end);
    const segOut = (await readFile(new URL(segParts.outputPart), 'utf8')).trim().split('\n');
    expect(segOut).toHaveLength(segment!.lines);
    // The job data followed the record.
    expect(chunkJobSchema.parse((await queue.getJob(jobId))!.data).segments).toEqual([segment]);
    // Redone at most the micro-batch the preemption abandoned.
    expect(seen.started.length).toBeLessThanOrEqual(30 + 2);

    expect((await store.get(b.spec.id))?.counters).toMatchObject({ completed: 30, failed: 0, settled: 1 });
    const files = await finalise(b);
    expect(files.output).toEqual(b.ids);
    expect(files.errors).toEqual([]);
  });

  it('a drained lane keeps the finished lines too; another lane finishes the rest', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    lane({ backend: slowBackend(20, seen), batchSize: 2 });
    const b = await batch(20, 20);
    const jobId = await add(b.jobs[0]!);
    await until(async () => (seen.started.length >= 6 ? true : undefined));
    const draining = lanes.shift()!;
    await draining.lane.close(0);
    await closeRedis(draining.connection);
    expect((await store.chunkSegments(b.spec.id, 0)).length).toBe(1);
    expect((await queue.getJob(jobId))?.attemptsMade).toBe(0);

    const metrics = lane();
    const job = await finished(jobId);
    expect(job.returnvalue).toEqual({ status: 'done', completed: 20, failed: 0, processedLines: 20 });
    expect(await outcomes(metrics)).toEqual({ done: 1 });
    expect((await finalise(b)).output).toEqual(b.ids);
  });

  it('crash after the segment is written, before it is recorded: the chunk reruns whole, the orphan is ignored', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    let crashes = 0;
    const crashing: BulkLaneDeps['store'] = {
      runnable: (id) => store.runnable(id),
      settleChunk: (...a) => store.settleChunk(...a),
      chunkSegments: (...a) => store.chunkSegments(...a),
      settleLastPart: (...a) => store.settleLastPart(...a),
      recordSegment: () => {
        crashes++;
        return Promise.reject(new Error('process died before recording the segment'));
      },
    };
    lane({ backend: slowBackend(20, seen), batchSize: 2, store: crashing });
    await listening(1);
    const b = await batch(20, 20);
    const jobId = await add(b.jobs[0]!);
    await until(async () => (seen.started.length >= 6 ? true : undefined));
    await requestPreemption(redis, config.redis.prefix, 'p', 1, 'test');
    const job = await finished(jobId);
    expect(crashes).toBe(1);
    expect(job.returnvalue).toEqual({ status: 'done', completed: 20, failed: 0, processedLines: 20 });
    expect(await store.chunkSegments(b.spec.id, 0)).toEqual([]);
    // The segment's parts were written (then never recorded) beside the whole chunk's.
    const parts = await readdir(new URL(batchFiles(b.spec.outputPrefix).parts));
    expect(parts.filter((p) => /^output-00000000-0-\d+\.jsonl$/.test(p))).toHaveLength(1);
    expect((await finalise(b)).output).toEqual(b.ids);
  });

  it('crash after the segment is recorded, before the job data follows: the rerun resumes from the record', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    let crashes = 0;
    const crashing: BulkLaneDeps['store'] = {
      runnable: (id) => store.runnable(id),
      settleChunk: (...a) => store.settleChunk(...a),
      chunkSegments: (...a) => store.chunkSegments(...a),
      settleLastPart: (...a) => store.settleLastPart(...a),
      recordSegment: async (...a) => {
        const r = await store.recordSegment(...a);
        crashes++;
        if (crashes === 1) throw new Error('process died before job.updateData');
        return r;
      },
    };
    lane({ backend: slowBackend(20, seen), batchSize: 2, store: crashing });
    await listening(1);
    const b = await batch(20, 20);
    const jobId = await add(b.jobs[0]!);
    await until(async () => (seen.started.length >= 6 ? true : undefined));
    await requestPreemption(redis, config.redis.prefix, 'p', 1, 'test');
    const job = await finished(jobId);
    expect(crashes).toBe(1);
    expect(chunkJobSchema.parse(job.data).segments).toBeUndefined(); // the job data never learnt of it
    const [segment] = await store.chunkSegments(b.spec.id, 0);
    expect(job.returnvalue).toEqual({ status: 'done', completed: 20, failed: 0, processedLines: 20 });
    // The rerun started after the segment: no record before its end ran twice.
    expect(seen.started.length).toBeLessThanOrEqual(20 + 2);
    expect(segment!.lines).toBeGreaterThan(0);
    expect((await store.get(b.spec.id))?.counters).toMatchObject({ completed: 20, failed: 0, settled: 1 });
    expect((await finalise(b)).output).toEqual(b.ids);
  });

  it('two runs of one chunk (a stalled lock): the one that records first wins, the other resumes from it', async () => {
    const b = await batch(12, 12);
    const job = b.jobs[0]!;
    const planned = plannedRange(job).start;
    // Run A yields after 4 lines and records its segment.
    const ac = new AbortController();
    const a = await runChunk(job, {
      storage,
      backend: createEchoBackend(),
      batchSize: 1,
      signal: ac.signal,
      onProgress: (n) => n === 4 && ac.abort(),
    });
    expect(await store.recordSegment(job.batchId, 0, planned, a.segment!)).toBe('recorded');
    // Run B, started from the chunk's start before A's record, finishes the whole chunk: it may not settle.
    const bRun = await runChunk(job, { storage, backend: createEchoBackend() });
    expect(bRun.status).toBe('done');
    expect(await store.settleLastPart(job.batchId, 0, planned, job.chunk.start, bRun)).toBe('conflict');
    // Nor may a run that yields from the start record a segment over A's.
    const ac2 = new AbortController();
    const c = await runChunk(
      { ...job, outputPart: dir.uri('other-out.jsonl'), errorPart: dir.uri('other-err.jsonl') },
      {
        storage,
        backend: createEchoBackend(),
        batchSize: 1,
        signal: ac2.signal,
        onProgress: (n) => n === 6 && ac2.abort(),
      },
    );
    expect(await store.recordSegment(job.batchId, 0, planned, c.segment!)).toBe('conflict');
    // The same segment again (two runs that yielded at the same line) is a no-op.
    expect(await store.recordSegment(job.batchId, 0, planned, a.segment!)).toBe('already');
    // The next run resumes from the record and settles.
    const rest = afterSegment(job, a.segment!);
    const last = await runChunk(rest, { storage, backend: createEchoBackend() });
    expect(await store.settleLastPart(job.batchId, 0, planned, rest.chunk.start, last)).toBe('settled');
    expect(await store.settleLastPart(job.batchId, 0, planned, rest.chunk.start, last)).toBe('already');
    expect((await store.get(b.spec.id))?.counters).toMatchObject({ completed: 12, failed: 0, settled: 1 });
    expect((await finalise(b)).output).toEqual(b.ids);
  });

  it('exactly N chunks yield for N tokens across two lanes', async () => {
    const m1 = lane({ backend: slowBackend(30), concurrency: 3, batchSize: 1 });
    const m2 = lane({ backend: slowBackend(30), concurrency: 3, batchSize: 1 });
    await listening(2);
    const b = await batch(6 * 15, 15);
    const ids = await Promise.all(b.jobs.map((j) => add(j)));
    await until(async () => ((await queue.getActiveCount()) === 6 ? true : undefined));
    await new Promise((r) => setTimeout(r, 100)); // every chunk past its first record

    await requestPreemption(redis, config.redis.prefix, 'p', 2, 'objective_missed');
    for (const id of ids) expect(await (await finished(id)).getState()).toBe('completed');
    const preempted = ((await outcomes(m1)).preempted ?? 0) + ((await outcomes(m2)).preempted ?? 0);
    expect(preempted).toBe(2);
    const recorded = await store.allChunkSegments(b.spec.id);
    expect([...recorded.values()].map((s) => s.length)).toEqual([1, 1]);
    // Each lane stops claiming at its first lost claim: one or two claims lost.
    expect(['-1', '-2']).toContain(await redis.get(preemptKeys(config.redis.prefix, 'p').tokens));
    const files = await finalise(b);
    expect(files.output).toEqual(b.ids);
  });
});
