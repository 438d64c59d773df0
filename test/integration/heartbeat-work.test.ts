/**
 * The heartbeat's `work` window from a real worker on real Redis: real-time
 * requests and a bulk chunk run through the echo backend, and the worker's
 * entry in the pool's workers hash reads back their counts, with the chunk's
 * running time as full time and its units as full units.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchStore, chunkJobFor, newBatchId } from '../../common/batch/batch-state.ts';
import type { Config } from '../../common/config.ts';
import { heartbeatSchema, type Heartbeat } from '../../common/contracts/heartbeat.ts';
import { REALTIME_JOB_NAME, replySchema, type RealtimeJob } from '../../common/contracts/realtime.ts';
import type { Chunk } from '../../common/contracts/batch.ts';
import type { TaskInput } from '../../common/contracts/tasks.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { chunkJobId, inboxKey, queueName, workersKey } from '../../common/topology.ts';
import type { ModelBackend } from '../../gpu-worker/backends/backend.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { startWorker, type RunningWorker } from '../../gpu-worker/worker.ts';
import { planBatch } from '../../producer/batch/planner.ts';
import { batchSpec } from '../helpers/batch-spec.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';
import { inputLine, sentimentLine, tempDir, writeInput, type TempDir } from '../unit/bulk/fixtures.ts';

const MICRO_BATCH_MS = 50;
const yaml = [
  'pools:',
  '  - name: p',
  '    backend: echo',
  '    lanes: { bulk: { concurrency: 1, batchSize: 2 } }',
  // A window no test outlives, and beats often enough to wait on.
  'worker: { heartbeatMs: 100, latencyWindowMs: 60000 }',
  '',
].join('\n');

/** Echo, with each bulk micro-batch taking a while, so that the chunk's full time is well above 0. */
function slowBulkEcho(): ModelBackend {
  const echo = createEchoBackend();
  return {
    ...echo,
    async runMany(inputs, opts) {
      await new Promise((r) => setTimeout(r, MICRO_BATCH_MS));
      return echo.runMany!(inputs, opts);
    },
  };
}

let config: Config;
let redis: Redis;
let dir: TempDir;
let worker: RunningWorker | undefined;

beforeEach(async () => {
  config = testConfig(yaml);
  redis = new Redis(REDIS_URL);
  dir = await tempDir();
});
afterEach(async () => {
  await worker?.close(0);
  worker = undefined;
  await deleteKeys(redis, config.redis.prefix);
  redis.disconnect();
  await dir.remove();
});

/** Runs real-time inputs one after another on the rt queue, waiting for each answer. */
async function runRealtime(inputs: TaskInput[]): Promise<void> {
  const queue = new Queue(queueName('rt', 'p'), { connection: redis.duplicate(), prefix: config.redis.prefix });
  const inbox = inboxKey(config.redis.prefix, 'test');
  for (const [i, input] of inputs.entries()) {
    const now = Date.now();
    const job: RealtimeJob = {
      requestId: `rt-${i}`,
      replyTo: inbox,
      deadlineAt: now + 10_000,
      enqueuedAt: now,
      stream: false,
      input,
    };
    await queue.add(REALTIME_JOB_NAME, job, { jobId: job.requestId });
    const raw = await until(async () => (await redis.lpop(inbox)) ?? undefined);
    expect(replySchema.parse(JSON.parse(raw))).toMatchObject({ i: job.requestId, k: 'done' });
  }
  await queue.close();
}

/** Runs one batch of `lines` as a single chunk on the bulk queue and waits for it to complete. */
async function runChunkOf(lines: string[]): Promise<void> {
  const now = Date.now();
  const store = new BatchStore(redis, config.redis.prefix);
  const batchId = newBatchId(now);
  const input = await writeInput(dir, `${batchId}.jsonl`, lines);
  const spec = batchSpec(now, { id: batchId, input: input.uri, outputPrefix: `${dir.uri(batchId)}/` });
  await store.create(spec);
  const chunks: Chunk[] = [];
  await planBatch(createFileStorage(), input.uri, { endpoint: '/v1/infer', model: 'p', chunkLines: 100 }, (c) => {
    chunks.push(c);
  });
  expect(chunks).toHaveLength(1);
  await store.transition(batchId, ['validating'], 'in_progress', { chunks: 1, total: lines.length });
  const queue = new Queue(queueName('bulk', 'p'), { connection: redis.duplicate(), prefix: config.redis.prefix });
  const id = chunkJobId(batchId, 0);
  await queue.add('chunk', chunkJobFor(spec, chunks[0]!), { jobId: id });
  expect(await until(async () => ((await queue.getJobState(id)) === 'completed' ? true : undefined))).toBe(true);
  await queue.close();
}

/** The worker's heartbeat as stored, once `ready` says it is the one to check. */
async function heartbeatWhen(ready: (hb: Heartbeat) => boolean): Promise<Heartbeat> {
  return until(async () => {
    const raw = await redis.hget(workersKey(config.redis.prefix, 'p'), worker!.workerId);
    if (raw === null) return undefined;
    const hb = heartbeatSchema.parse(JSON.parse(raw));
    return ready(hb) ? hb : undefined;
  });
}

describe('heartbeat work window', () => {
  it('reports real-time and bulk work, and the chunk as full time', async () => {
    worker = await startWorker(config, { logger: silentLogger(), backend: slowBulkEcho() });
    const idle = await heartbeatWhen(() => true);
    expect(idle.work).toMatchObject({
      realtime: { requests: 0, units: 0 },
      bulk: { records: 0, units: 0 },
      full: { ms: 0, units: 0 },
    });

    // Echo counts words as tokens: 3 prompt + 3 completion, then 1 for the sentiment.
    await runRealtime([
      { task: 'chat', messages: [{ role: 'user', content: 'one two three' }] },
      { task: 'sentiment', text: 'fine' },
    ]);
    const afterRealtime = await heartbeatWhen((hb) => hb.work?.realtime.requests === 2);
    expect(afterRealtime.work).toMatchObject({ realtime: { units: 7 }, full: { ms: 0, units: 0 } });

    // Five lines in micro-batches of two: 3 sentiments (1 each), a chat of 4 + 4 words, and an
    // invalid line the backend never sees (it counts as no record).
    await runChunkOf([
      sentimentLine('a', 'a'),
      sentimentLine('b', 'b'),
      sentimentLine('c', 'c'),
      inputLine('d', { input: { task: 'chat', messages: [{ role: 'user', content: 'w x y z' }] } }),
      JSON.stringify({ custom_id: 'e', method: 'GET' }),
    ]);
    const hb = await heartbeatWhen((h) => h.work?.bulk.records === 4);
    expect(hb.work).toMatchObject({
      realtime: { requests: 2, units: 7 },
      bulk: { records: 4, units: 11 },
      // The real-time requests finished before the chunk began: only its own units are full units.
      full: { units: 11 },
    });
    const { full, windowMs } = hb.work!;
    // Two micro-batches went to the backend, one after the other.
    expect(full.ms).toBeGreaterThanOrEqual(2 * MICRO_BATCH_MS - 2);
    expect(full.ms).toBeLessThan(windowMs);
    expect(windowMs).toBeLessThanOrEqual(60_000);
  });
});
