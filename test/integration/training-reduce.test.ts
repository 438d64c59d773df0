/**
 * A round's reduce and the round transitions around it, on a real Redis and
 * file:// storage.
 *
 * - Errors are classified: a storage error that is retryable (the first
 *   listing of a rank's checkpoint answers `unavailable`) is retried by
 *   BullMQ and the round still moves on; a permanent one (`permission_denied`)
 *   fails the job at its first attempt, and the leader fails the gang with
 *   the reason. The lane runs as the worker runs it; the reduce job is the
 *   one the leader's pass adds (its real attempts and backoff).
 * - Round transitions are event-driven: with the leader's timers at a
 *   minute, a `rounds` job of the built-in trainer runs from its first
 *   admission (one tick) to `succeeded`, each reduce added and each next
 *   round admitted on the events of `train.<pool>` alone.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingSpec } from '../../common/contracts/training.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage, StorageError, type Storage, type StorageErrorCode } from '../../common/storage/index.ts';
import { queueName, reduceJobId } from '../../common/topology.ts';
import { newTrainingJobId, TrainingStore } from '../../common/training/training-state.ts';
import { featurize, newModel, writeModelDir } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { startTrainingLane, type TrainingLane } from '../../gpu-worker/training/training-lane.ts';
import { createSchedulerMetrics } from '../../scheduler/metrics.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { TrainingLoop } from '../../scheduler/training-loop.ts';
import { deleteKeys, REDIS_URL, startFleet } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

const pool = 'p';
let dir: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-reduce-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** file:// storage whose listings fail with `code` (the first `times` calls; Infinity: every one). */
function failingListings(code: StorageErrorCode, times: number): { storage: Storage; failures: () => number } {
  const base = createFileStorage();
  let failures = 0;
  const storage: Storage = Object.create(base) as Storage;
  storage.list = (prefixUri, opts) => {
    if (failures < times) {
      failures++;
      return Promise.reject(new StorageError(code, `${code} for the test: ${prefixUri}`, { uri: prefixUri }));
    }
    return base.list(prefixUri, opts);
  };
  return { storage, failures: () => failures };
}

/** A Redis prefix, a training lane on `storage`, a leader's training loop and a store. */
async function reduceEnv(storage: Storage) {
  const prefix = `t-reduce-${randomUUID().slice(0, 8)}`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const laneRedis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const lane: TrainingLane = startTrainingLane({
    prefix,
    pool,
    workerId: 'w1',
    concurrency: 1,
    connection: laneRedis,
    store: new TrainingStore(laneRedis, prefix),
    logger: silentLogger(),
    storage,
    programs: [],
    workRoot: dir,
    settings: { lockDurationMs: 10_000, stalledIntervalMs: 5000, maxStalledCount: 1, rendezvousTimeoutMs: 5000 },
    advertiseHost: '127.0.0.1',
  });
  const loop = new TrainingLoop({
    redis,
    prefix,
    pools: [{ name: pool }],
    metrics: createSchedulerMetrics({}),
    logger: silentLogger(),
    now: Date.now,
  });
  const queue = new Queue(queueName('train', pool), { connection: redis, prefix });
  cleanups.push(async () => {
    await lane.close(0);
    await loop.close();
    await queue.obliterate({ force: true });
    await queue.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
    laneRedis.disconnect();
  });
  return { store: new TrainingStore(redis, prefix), loop, queue };
}

/** A 1-rank `rounds` job whose round 1 has ended: its rank's checkpoint written, the gang `reducing`. */
async function roundAwaitingReduce(store: TrainingStore): Promise<TrainingSpec> {
  const spec: TrainingSpec = {
    id: newTrainingJobId(Date.now()),
    pool,
    tenant: 'default',
    command: 'builtin:text-classifier',
    args: [],
    dataUri: 'file:///unused/data.tsv',
    shard: 'lines',
    mode: 'rounds',
    initUri: null,
    checkpointPrefix: `${pathToFileURL(join(dir, randomUUID())).href}/`,
    params: {},
    workers: 1,
    rounds: 2,
    priority: 0,
    attempts: 1,
    createdAt: Date.now(),
  };
  await store.create(spec);
  expect(await store.admit(pool, spec.id, 1, 1, Date.now())).toBe('admitted');
  const checkpointUri = `${spec.checkpointPrefix}round-1/rank-0/`;
  const model = newModel({ features: 64, ngrams: 1, classes: ['negative', 'positive'] });
  model.weights[64 + featurize('good', 64, 1).indices[0]!] = 1;
  await writeModelDir(fileURLToPath(checkpointUri), model);
  const base = { worker: 'w1', startedAt: Date.now(), checkpointUri };
  await store.startRank(pool, spec.id, 1, 0, { ...base, state: 'running' });
  await store.settleRank(
    pool,
    spec.id,
    1,
    0,
    { ...base, state: 'succeeded', endedAt: Date.now(), exitCode: 0, metrics: { examples: 1 } },
    Date.now(),
  );
  expect((await store.get(pool, spec.id))?.status).toBe('reducing');
  return spec;
}

describe('the reduce of a round', () => {
  it('retries a retryable storage error, and the round moves on', async () => {
    const { storage, failures } = failingListings('unavailable', 1);
    const { store, loop, queue } = await reduceEnv(storage);
    const spec = await roundAwaitingReduce(store);
    await loop.pass(1); // adds the reduce job, as the leader does
    const gang = await until(async () => {
      const g = await store.get(pool, spec.id);
      return g?.status === 'queued' && g.round === 2 ? g : undefined;
    }, 10_000);
    expect(gang.reason).toBeNull();
    expect(failures()).toBe(1);
    // The lane moves the gang on before its processor returns, and BullMQ marks the job completed after.
    const id = reduceJobId(spec.id, 1);
    await until(async () => ((await (await queue.getJob(id))?.getState()) === 'completed' ? true : undefined));
    const written = await stat(join(fileURLToPath(spec.checkpointPrefix), 'round-1', 'model', 'model.json'));
    expect(written.size).toBeGreaterThan(0);
  });

  it('fails the job at once on a permanent storage error, and the leader fails the gang with the reason', async () => {
    const { storage, failures } = failingListings('permission_denied', Infinity);
    const { store, loop, queue } = await reduceEnv(storage);
    const spec = await roundAwaitingReduce(store);
    await loop.pass(1);
    const id = reduceJobId(spec.id, 1);
    await until(async () => ((await (await queue.getJob(id))?.getState()) === 'failed' ? true : undefined));
    expect(failures()).toBe(1); // no second attempt
    await loop.pass(1);
    const gang = await store.get(pool, spec.id);
    expect(gang?.status).toBe('failed');
    expect(gang?.reason).toMatch(
      /^reduce of round 1 failed: reduce of round 1: reducing the checkpoints failed \(permission_denied\): /,
    );
  });
});

describe('round transitions', () => {
  it("run on train.<pool>'s events: a 3-round job succeeds with the leader's timers at a minute", async () => {
    const data = join(dir, 'data.tsv');
    await writeFile(data, 'good film\tpositive\nbad film\tnegative\n'.repeat(20));
    const fleet = await startFleet({
      yaml: `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000, balanceEveryMs: 60000 }
batch: { admitEveryMs: 60000 }
autoscaler: { everyMs: 60000 }
pools:
  - name: ${pool}
    backend: echo
    lanes: { realtime: { concurrency: 1 }, bulk: { concurrency: 0 }, training: { concurrency: 1 } }
`,
      workers: 1,
    });
    cleanups.push(() => fleet.stop());
    const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
    cleanups.push(() => scheduler.close());
    const url = `${fleet.producer.url}/v1/training/jobs`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        pool,
        command: 'builtin:text-classifier',
        data_uri: pathToFileURL(data).href,
        mode: 'rounds',
        checkpoint_uri: `${pathToFileURL(join(dir, randomUUID())).href}/`,
        params: { epochs: 1, features: 1024 },
        workers: 1,
        rounds: 3,
      }),
    });
    const { id } = (await res.json()) as { id: string };
    expect(res.status).toBe(200);
    await scheduler.tick(); // admits round 1; nothing ticks after this
    const job = await until(async () => {
      const j = (await (await fetch(`${url}/${id}`)).json()) as { status: string; error: string | null; round: number };
      return j.status === 'succeeded' || j.status === 'failed' ? j : undefined;
    }, 15_000);
    expect(job).toMatchObject({ status: 'succeeded', error: null });
  });
});
