/**
 * Training gangs end to end on a real Redis: the producer's API, a leading
 * scheduler (timers slowed to a minute, so only tick() admits) and two real
 * gpu-workers with one training slot each, running test/fixtures/
 * training-rank.mjs, which checkpoints into a file:// prefix. Each test has
 * its own key prefix.
 */
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { trainingExplanationSchema } from '../../common/contracts/explain.ts';
import type { TrainingSpec } from '../../common/contracts/training.ts';
import { silentLogger } from '../../common/logger.ts';
import { TrainingStore } from '../../common/training/training-state.ts';
import { explainKey, queueName, rankJobId, workersKey } from '../../common/topology.ts';
import { StaleLeaderError } from '../../scheduler/fenced-writes.ts';
import { createSchedulerMetrics } from '../../scheduler/metrics.ts';
import { startScheduler, type RunningScheduler } from '../../scheduler/scheduler.ts';
import { TrainingLoop } from '../../scheduler/training-loop.ts';
import { deleteKeys, REDIS_URL, startFleet, testConfig, type TestFleet } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

const fixture = resolve(import.meta.dirname, '../fixtures/training-rank.mjs');

const yaml = (quota = '') => `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000, balanceEveryMs: 60000 }
batch: { admitEveryMs: 60000 }
worker: { heartbeatMs: 100 }
pools:
  - name: p
    backend: echo
    ${quota}
    lanes: { realtime: { concurrency: 1 }, bulk: { concurrency: 0 }, training: { concurrency: 1, programs: ['${process.execPath}'] } }
`;

interface Env {
  fleet: TestFleet;
  scheduler: RunningScheduler;
  store: TrainingStore;
  train: Queue;
  post(body: Record<string, unknown>): Promise<{ status: number; json: ApiJob }>;
  get(id: string): Promise<ApiJob>;
}

interface ApiJob {
  id: string;
  status: string;
  round: number;
  waiting_reason: string | null;
  error: string | null;
  ranks: { round: number; rank: number; status: string; exit_code: number | null; metrics: Record<string, number> }[];
}

let dir: string;
const cleanups: (() => Promise<void>)[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-training-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function setup(quota = ''): Promise<Env> {
  const fleet = await startFleet({ yaml: yaml(quota), workers: 2 });
  cleanups.push(() => fleet.stop());
  const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  cleanups.push(() => scheduler.close());
  expect(scheduler.epoch()).toBeGreaterThan(0);
  const connection = fleet.redis.duplicate();
  const train = new Queue(queueName('train', 'p'), { connection, prefix: fleet.prefix });
  cleanups.push(async () => {
    await train.close();
    connection.disconnect();
  });
  const url = `${fleet.producer.url}/v1/training/jobs`;
  return {
    fleet,
    scheduler,
    store: new TrainingStore(fleet.redis, fleet.prefix),
    train,
    async post(body) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as ApiJob };
    },
    async get(id) {
      return (await (await fetch(`${url}/${id}`)).json()) as ApiJob;
    },
  };
}

let runs = 0;
/** A gang definition running the fixture, checkpointing under its own folder of `dir`. */
function gang(workers: number, params: Record<string, unknown> = {}, rounds = 1) {
  const prefix = `${pathToFileURL(join(dir, `run-${runs++}`)).href}/`;
  return {
    body: {
      pool: 'p',
      command: process.execPath,
      args: [fixture],
      data_uri: `${pathToFileURL(join(dir, 'corpus')).href}/`, // shard none: never read
      shard: 'none',
      checkpoint_uri: prefix,
      params: { barrier: true, ...params },
      workers,
      rounds,
    },
    checkpoint: (round: number, rank: number) =>
      join(new URL(prefix).pathname, `round-${round}`, `rank-${rank}`, 'model.json'),
  };
}

/** Ticks the scheduler until `probe` holds (the workers run in the background meanwhile). */
async function tickUntil<T>(env: Env, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  return until(async () => {
    await env.scheduler.tick();
    return probe();
  }, timeoutMs);
}

/** A gang of 2 on pool `p` for the store-level tests (its command never runs). */
function storeSpec(id: string, over: Pick<TrainingSpec, 'rounds' | 'createdAt'>): TrainingSpec {
  return {
    id,
    pool: 'p',
    tenant: 't',
    command: 'x',
    args: [],
    dataUri: 'file:///d/',
    shard: 'none',
    mode: 'gang',
    initUri: null,
    checkpointPrefix: 'file:///c/',
    params: {},
    workers: 2,
    priority: 0,
    attempts: 1,
    ...over,
  };
}

describe('training state', () => {
  it('a rank settled twice counts once; the last success of a round queues the next; late results are ignored', async () => {
    const config = testConfig(yaml());
    const redis = new Redis(REDIS_URL);
    cleanups.push(async () => {
      await deleteKeys(redis, config.redis.prefix);
      redis.disconnect();
    });
    const store = new TrainingStore(redis, config.redis.prefix);
    const spec = storeSpec('train_00000000000000000001', { rounds: 2, createdAt: 1 });
    await store.create(spec);
    const rec = (state: 'running' | 'succeeded' | 'failed') => ({
      state,
      worker: 'w',
      startedAt: 1,
      checkpointUri: 'file:///c/',
      ...(state === 'failed' ? { reason: 'boom' } : {}),
    });
    expect(await store.startRank('p', spec.id, 1, 0, rec('running'))).toBe('not_running');
    expect(await store.admit('p', spec.id, 1, 1, 5)).toBe('admitted');
    expect(await store.admit('p', spec.id, 1, 1, 5)).toBe('conflict');
    expect(await store.startRank('p', spec.id, 1, 0, rec('running'))).toBe('run');
    expect(await store.settleRank('p', spec.id, 1, 0, rec('succeeded'), 6)).toBe('recorded');
    expect(await store.settleRank('p', spec.id, 1, 0, rec('succeeded'), 6)).toBe('already');
    expect(await store.startRank('p', spec.id, 1, 0, rec('running'))).toBe('already_ended');
    expect(await store.get('p', spec.id)).toMatchObject({ status: 'running', roundStarted: 1, roundSucceeded: 1 });
    expect(await store.settleRank('p', spec.id, 1, 1, rec('succeeded'), 7)).toBe('round_done');
    expect(await store.get('p', spec.id)).toMatchObject({ status: 'queued', round: 2, roundSucceeded: 0 });
    // A late duplicate of round 1 changes nothing.
    expect(await store.settleRank('p', spec.id, 1, 1, rec('failed'), 8)).toBe('ignored');
    expect(await store.admit('p', spec.id, 1, 2, 9)).toBe('admitted');
    expect(await store.settleRank('p', spec.id, 2, 1, rec('failed'), 10)).toBe('gang_failed');
    expect(await store.settleRank('p', spec.id, 2, 0, rec('succeeded'), 11)).toBe('ignored');
    expect(await store.get('p', spec.id)).toMatchObject({ status: 'failed', reason: 'boom', endedAt: 10 });
    expect((await store.ranks('p', spec.id)).map((r) => [r.round, r.rank, r.state])).toEqual([
      [1, 0, 'succeeded'],
      [1, 1, 'succeeded'],
      [2, 1, 'failed'],
    ]);
    expect((await store.cancel('p', spec.id, 'x', 12)).moved).toBe(false);
  });
});

describe('gang restarts', () => {
  it('a rank started twice or failed restarts the gang for its round, ignores the run before, and fails with none left', async () => {
    const config = testConfig(yaml());
    const redis = new Redis(REDIS_URL);
    cleanups.push(async () => {
      await deleteKeys(redis, config.redis.prefix);
      redis.disconnect();
    });
    const store = new TrainingStore(redis, config.redis.prefix);
    const spec = { ...storeSpec('train_00000000000000000004', { rounds: 1, createdAt: 1 }), maxRestarts: 1 };
    await store.create(spec);
    const rec = (state: 'running' | 'failed', restart = 0) => ({
      state,
      worker: 'w',
      startedAt: 1,
      checkpointUri: 'file:///c/',
      restart,
      ...(state === 'failed' ? { reason: 'rank 1 of round 1: exit code 3' } : {}),
    });
    expect(await store.admit('p', spec.id, 1, 1, 5)).toBe('admitted');
    expect(await store.startRank('p', spec.id, 1, 0, rec('running'))).toBe('run');
    expect(await store.startRank('p', spec.id, 1, 1, rec('running'))).toBe('run');
    // Rank 0 starts again in the same run (its worker was lost): the gang restarts, its records cleared.
    expect(await store.startRank('p', spec.id, 1, 0, rec('running'))).toBe('gang_restarting');
    expect(await store.get('p', spec.id)).toMatchObject({
      status: 'queued',
      round: 1,
      restarts: 1,
      stopRestart: 0,
      restartReason: 'rank 0 of round 1 started again: its run was lost (its worker died or drained)',
    });
    expect(await store.ranks('p', spec.id)).toEqual([]);
    await store.stopped('p', spec.id, 0);
    expect((await store.get('p', spec.id))?.stopRestart).toBeNull();
    expect(await store.admit('p', spec.id, 1, 1, 6)).toBe('admitted');
    // The run before is over: its ranks neither start nor settle, nor publish an address.
    expect(await store.startRank('p', spec.id, 1, 1, rec('running'))).toBe('not_running');
    expect(await store.settleRank('p', spec.id, 1, 1, rec('failed'), 7)).toBe('ignored');
    expect(await store.publishMaster('p', spec.id, { round: 1, restart: 0, addr: 'h', port: 1 })).toBe(false);
    expect(await store.publishMaster('p', spec.id, { round: 1, restart: 1, addr: 'h', port: 2 })).toBe(true);
    expect(await store.master('p', spec.id)).toEqual({ round: 1, restart: 1, addr: 'h', port: 2 });
    expect(await store.startRank('p', spec.id, 1, 1, rec('running', 1), 1)).toBe('run');
    // No restart left: a failure fails the gang, with the restarts in its reason.
    expect(await store.settleRank('p', spec.id, 1, 1, rec('failed', 1), 8, 1)).toBe('gang_failed');
    expect(await store.get('p', spec.id)).toMatchObject({
      status: 'failed',
      reason: 'rank 1 of round 1: exit code 3 (after 1 gang restarts, max_restarts 1)',
    });
    expect((await store.ranks('p', spec.id)).map((r) => [r.rank, r.state, r.restart])).toEqual([[1, 'failed', 1]]);
  });
});

/** A leader's training loop on pool `p` that reconciles on every pass, and the pool's `train` queue; closed after the test. */
function reconcilingLoop(redis: Redis, prefix: string): { loop: TrainingLoop; queue: Queue } {
  const loop = new TrainingLoop({
    redis,
    prefix,
    pools: [{ name: 'p', trainingQuota: undefined }],
    metrics: createSchedulerMetrics({}),
    logger: silentLogger(),
    now: Date.now,
    reconcileEveryMs: 0,
  });
  const connection = redis.duplicate();
  const queue = new Queue(queueName('train', 'p'), { connection, prefix });
  cleanups.push(async () => {
    await loop.close();
    await queue.close();
    connection.disconnect();
  });
  return { loop, queue };
}

describe('training loop reconciliation', () => {
  it("adds a running gang's missing rank job again, runs again one that completed unsettled, and fails the gang for one that failed unsettled", async () => {
    const config = testConfig(yaml());
    const prefix = config.redis.prefix;
    const redis = new Redis(REDIS_URL);
    cleanups.push(async () => {
      await deleteKeys(redis, prefix);
      redis.disconnect();
    });
    const now = Date.now();
    const heartbeat = {
      workerId: 'w1',
      pool: 'p',
      host: 'h',
      pid: 1,
      backend: 'echo',
      lanes: [{ name: 'training', concurrency: 2, inFlight: 0 }],
      state: 'ready',
      startedAt: now,
      seenAt: now,
      expiresAt: now + 60_000,
    };
    await redis.hset(workersKey(prefix, 'p'), 'w1', JSON.stringify(heartbeat));
    const { loop, queue } = reconcilingLoop(redis, prefix);
    const store = new TrainingStore(redis, prefix);
    const id = 'train_00000000000000000002';
    await store.create(storeSpec(id, { rounds: 1, createdAt: now }));
    expect(await loop.pass(3)).toEqual([{ pool: 'p', kind: 'admit', id, round: 1, size: 2, reason: 'fits' }]);
    expect(await queue.getJobCountByTypes('waiting')).toBe(2);
    // The pass's explanation: the gang admitted, holding both slots.
    const explained = async () => {
      const raw = await redis.get(explainKey(prefix, 'training', 'p'));
      return raw === null ? null : trainingExplanationSchema.parse(JSON.parse(raw));
    };
    expect(await explained()).toMatchObject({
      epoch: 3,
      slots: { total: 2, held: 2, free: 0 },
      gangs: [{ jobId: id, size: 2, state: 'queued', decision: 'admit', reason: 'fits' }],
    });

    await queue.remove(rankJobId(id, 1, 1));
    await loop.pass(3);
    expect(await queue.getJob(rankJobId(id, 1, 1))).toBeDefined();

    // Rank jobs that complete without settling their rank (stopped while the gang runs on) run again.
    const stopperConnection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const stopper = new Worker(queueName('train', 'p'), () => Promise.resolve({ status: 'stopped' }), {
      connection: stopperConnection,
      prefix,
    });
    await until(async () => ((await queue.getJobCountByTypes('completed')) === 2 ? true : undefined));
    await stopper.close();
    stopperConnection.disconnect();
    await loop.pass(3);
    expect(await queue.getJobCountByTypes('waiting')).toBe(2);

    // Both rank jobs fail without a worker settling them (as when BullMQ gives up on a dead worker's job).
    const blocking = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const worker = new Worker(
      queueName('train', 'p'),
      () => {
        throw new UnrecoverableError('job stalled more than allowable limit');
      },
      { connection: blocking, prefix },
    );
    await until(async () => ((await queue.getJobCountByTypes('failed')) === 2 ? true : undefined));
    await worker.close();
    blocking.disconnect();
    await loop.pass(3);
    expect(await store.get('p', id)).toMatchObject({
      status: 'failed',
      reason: 'rank 0 lost: job stalled more than allowable limit',
    });
    await loop.pass(3);
    expect(await store.openIds('p')).toEqual([]);
    // Nothing open and no quota: nothing to explain, and the last record is gone.
    await loop.pass(3);
    expect(await explained()).toBeNull();
    // An older epoch than the pool has seen is refused.
    await store.create({ ...(await store.get('p', id))!.spec, id: 'train_00000000000000000003' });
    await expect(loop.pass(2)).rejects.toThrow(StaleLeaderError);
  });
});

describe('gang loss seen by the leader', () => {
  it('a running rank whose worker stopped beating restarts the gang, and the next pass stops the run it left', async () => {
    const config = testConfig(yaml());
    const prefix = config.redis.prefix;
    const redis = new Redis(REDIS_URL);
    cleanups.push(async () => {
      await deleteKeys(redis, prefix);
      redis.disconnect();
    });
    const { loop, queue } = reconcilingLoop(redis, prefix);
    const now = Date.now();
    const beat = { pool: 'p', host: 'h', pid: 1, backend: 'echo', state: 'ready', startedAt: now, seenAt: now };
    await redis.hset(
      workersKey(prefix, 'p'),
      'alive',
      JSON.stringify({
        ...beat,
        workerId: 'alive',
        lanes: [{ name: 'training', concurrency: 2, inFlight: 0 }],
        expiresAt: now + 60_000,
      }),
    );
    const store = new TrainingStore(redis, prefix);
    const id = 'train_00000000000000000005';
    await store.create({ ...storeSpec(id, { rounds: 1, createdAt: now }), maxRestarts: 1 });
    await loop.pass(1);
    const rec = (worker: string) => ({
      state: 'running' as const,
      worker,
      startedAt: now,
      checkpointUri: 'file:///c/',
    });
    expect(await store.startRank('p', id, 1, 0, rec('alive'))).toBe('run');
    expect(await store.startRank('p', id, 1, 1, rec('gone'))).toBe('run');
    await loop.pass(1);
    // Restarted, and (the slots being free) the second run admitted in the same pass.
    expect(await store.get('p', id)).toMatchObject({
      status: 'running',
      restarts: 1,
      stopRestart: 0,
      restartReason: 'rank 1 of round 1 lost: its worker gone stopped sending heartbeats',
    });
    expect(await store.ranks('p', id)).toEqual([]);
    // The next pass stops the first run (its queued jobs removed); the second has ids of its own.
    await loop.pass(1);
    expect((await store.get('p', id))?.stopRestart).toBeNull();
    expect(await queue.getJob(rankJobId(id, 1, 0))).toBeUndefined();
    expect((await queue.getJob(rankJobId(id, 1, 1, 1)))?.data).toMatchObject({
      restart: 1,
      checkpointUri: 'file:///c/round-1/restart-1/rank-1/',
    });
  });
});

describe('training gang admission', () => {
  it('a gang of 3 on 2 × 1 slots waits whole with its reason; a gang of 2 runs both rounds at once', async () => {
    const env = await setup();
    const big = await env.post(gang(3).body);
    expect(big.status).toBe(200);
    expect(big.json).toMatchObject({ status: 'queued', round: 1, ranks: [] });
    const small = gang(2, { lr: 0.01 }, 2);
    const { json: job } = await env.post(small.body);

    const done = await tickUntil(env, async () => {
      // Never a partial gang: none of the big gang's ranks is ever queued.
      const bigNow = await env.get(big.json.id);
      expect(bigNow.status).toBe('queued');
      for (let rank = 0; rank < 3; rank++)
        expect(await env.train.getJob(rankJobId(big.json.id, 1, rank))).toBeUndefined();
      const j = await env.get(job.id);
      return j.status === 'succeeded' ? j : undefined;
    });
    expect((await env.get(big.json.id)).waiting_reason).toBe('exceeds_pool_slots');

    // Each round ran whole (the fixture's barrier fails a rank whose gang is not all running).
    expect(done.ranks.map((r) => [r.round, r.rank, r.status, r.exit_code])).toEqual([
      [1, 0, 'succeeded', 0],
      [1, 1, 'succeeded', 0],
      [2, 0, 'succeeded', 0],
      [2, 1, 'succeeded', 0],
    ]);
    expect(done.ranks[3]!.metrics).toEqual({ loss: 1 / 4, accuracy: 0.52 });
    const model = JSON.parse(await readFile(small.checkpoint(2, 1), 'utf8'));
    expect(model).toEqual({ rank: 1, worldSize: 2, round: 2, lr: 0.01, resumedFrom: 1, sawRedisUrl: false });
    // The metric lines are the rank job's log and progress.
    const rankJob = (await env.train.getJob(rankJobId(job.id, 2, 1)))!;
    expect(rankJob.progress).toEqual({ round: 2, rank: 1, metrics: { loss: 1 / 4, accuracy: 0.52 } });
    const { logs } = await env.train.getJobLogs(rankJob.id!);
    expect(logs.map((l) => JSON.parse(l) as { metric: string }).map((l) => l.metric)).toEqual(['loss', 'accuracy']);
  });

  it('a rank that fails fails its gang with the reason, and the other rank is stopped', async () => {
    const env = await setup();
    // Rank 0 waits at the barrier for rank 1, which fails: rank 0 must be stopped, not left to time out.
    const { json: job } = await env.post({ ...gang(2, { failRank: 1, barrierMs: 15_000 }).body, max_restarts: 0 });
    const failed = await tickUntil(env, async () => {
      const j = await env.get(job.id);
      return j.status === 'failed' ? j : undefined;
    });
    expect(failed.error).toBe('rank 1 of round 1: exit code 3; stderr: rank 1: loss is NaN');
    expect(failed.ranks.find((r) => r.rank === 1)).toMatchObject({ status: 'failed', exit_code: 3 });

    const started = Date.now();
    const rank0 = await tickUntil(env, async () => {
      const j = await env.train.getJob(rankJobId(job.id, 1, 0));
      return j?.finishedOn ? j : undefined;
    });
    expect(rank0.returnvalue).toEqual({ status: 'stopped' });
    expect(Date.now() - started).toBeLessThan(5000);
    // Its record was never settled: what a rank reports after its gang failed is ignored.
    expect((await env.get(job.id)).ranks.find((r) => r.rank === 0)?.status).toBe('running');
    expect(await env.store.openIds('p')).toEqual([]);
  });

  it("a stale leader's admission is rejected and the scheduler stands down", async () => {
    const env = await setup();
    const { json: job } = await env.post(gang(1).body);
    const epoch = env.scheduler.epoch();
    // A newer leader has claimed the pool.
    expect(await env.store.fence('p', epoch + 1)).toBe(true);
    await env.scheduler.tick();
    expect(env.scheduler.epoch()).toBe(0);
    expect((await env.get(job.id)).status).toBe('queued');
    expect(await env.train.getJob(rankJobId(job.id, 1, 0))).toBeUndefined();
    // The fenced move itself refuses the old epoch.
    expect(await env.store.admit('p', job.id, epoch, 1, Date.now())).toBe('stale');
    expect(await env.store.admit('p', job.id, epoch + 1, 1, Date.now())).toBe('admitted');
  });

  it('answers 400 with the field, 404 for an unknown pool or job, and refuses a gang over the quota', async () => {
    const env = await setup('trainingQuota: 1');
    const { body } = gang(1);
    const bad = async (b: Record<string, unknown>) => {
      const r = await env.post(b);
      return [r.status, (r.json as unknown as { error: { message: string } }).error.message];
    };
    expect(await bad({ ...body, workers: 0 })).toEqual([400, 'invalid request: workers: workers is at least 1']);
    expect(await bad({ ...body, args: 'x' })).toEqual([400, 'invalid request: args: args must be an array of strings']);
    expect(await bad({ ...body, data_uri: undefined })).toEqual([
      400,
      'invalid request: data_uri: data_uri is required: a storage URI (file://, gs:// or oci://)',
    ]);
    expect(await bad({ ...body, pool: 'nope' })).toEqual([404, "The pool 'nope' does not exist; pools: p"]);
    expect(await bad({ ...body, workers: 2 })).toEqual([
      400,
      "workers: a gang of 2 can never run on pool 'p', whose training quota is 1 slots",
    ]);
    const missing = await fetch(`${env.fleet.producer.url}/v1/training/jobs/train_00000000000000000000`);
    expect(missing.status).toBe(404);
    const malformed = await fetch(`${env.fleet.producer.url}/v1/training/jobs/42`);
    expect(malformed.status).toBe(400);

    // Cancel: a queued gang is cancelled, then wound up by the scheduler; a second cancel is a conflict.
    const { json: job } = await env.post({ ...body, params: { sleepMs: 10_000 } });
    const cancel = () => fetch(`${env.fleet.producer.url}/v1/training/jobs/${job.id}/cancel`, { method: 'POST' });
    expect((await cancel()).status).toBe(200);
    expect((await cancel()).status).toBe(409);
    await env.scheduler.tick();
    expect(await env.store.openIds('p')).toEqual([]);
    expect(await env.train.getJob(rankJobId(job.id, 1, 0))).toBeUndefined();
  });

  it('a drain stops a running rank within the grace period and puts it back on the queue', async () => {
    const env = await setup();
    const { json: job } = await env.post(gang(1, { sleepMs: 30_000 }).body);
    const id = rankJobId(job.id, 1, 0);
    await tickUntil(env, async () => ((await env.train.getJob(id))?.processedOn ? true : undefined));
    const worker = (await env.get(job.id)).ranks[0]!;
    expect(worker.status).toBe('running');
    const started = Date.now();
    await Promise.all(env.fleet.workers.map((w) => w.close(2500)));
    expect(Date.now() - started).toBeLessThan(4500);
    // Back on the queue without spending an attempt, for another worker.
    const back = (await env.train.getJob(id))!;
    expect(['waiting', 'delayed']).toContain(await back.getState());
    expect(back.attemptsMade).toBe(0);
    expect((await env.get(job.id)).status).toBe('running');
  });
});

describe('bad training job definitions', () => {
  it('answers 400 (or 403 for storage it may not name) with the field for each, and nothing is half-started', async () => {
    const env = await setup();
    const { body } = gang(1);
    const data = join(dir, 'defs-data');
    await mkdir(join(data, 'empty'), { recursive: true });
    await writeFile(join(data, 'train.tsv'), 'good\t1\nbad\t0\n');
    await symlink('/etc', join(data, 'etc-link'));
    const bad = async (b: Record<string, unknown>) => {
      const r = await env.post(b);
      return [r.status, (r.json as unknown as { error: { message: string } }).error.message];
    };
    const past = new Date(Date.now() - 60_000).toISOString();
    const cases: Array<[Record<string, unknown>, number, string]> = [
      [{ workers: 0 }, 400, 'invalid request: workers: workers is at least 1'],
      [
        { data_uri: undefined },
        400,
        'invalid request: data_uri: data_uri is required: a storage URI (file://, gs:// or oci://)',
      ],
      [
        { command: '/bin/sh' },
        400,
        `command: '/bin/sh' is not among pool 'p''s training programs (lanes.training.programs: ${process.execPath})`,
      ],
      [{ deadline: past }, 400, `deadline: ${past} is in the past`],
      [
        { deadline: 'tomorrow' },
        400,
        'invalid request: deadline: deadline is an ISO 8601 date-time with a zone, e.g. 2026-12-08T06:00:00Z',
      ],
      [
        { max_attempts: 2 },
        400,
        'invalid request: max_attempts: max_attempts must be 1 in gang mode: a failed rank restarts the whole gang (max_restarts)',
      ],
      [
        { mode: 'rounds', max_restarts: 1 },
        400,
        'invalid request: max_restarts: max_restarts is for gang mode: in rounds mode a failed rank is retried alone (max_attempts)',
      ],
      // An unreadable bucket: what the workers would pull is checked before anything is queued.
      [
        { shard: 'lines', data_uri: pathToFileURL(join(data, 'missing.tsv')).href },
        400,
        `data_uri: ${pathToFileURL(join(data, 'missing.tsv')).href} cannot be read (not_found)`,
      ],
      [
        { shard: 'lines', data_uri: `${pathToFileURL(join(data, 'empty')).href}/` },
        400,
        `data_uri: no objects under ${pathToFileURL(join(data, 'empty')).href}/`,
      ],
      [
        {
          shard: 'lines',
          data_uri: [pathToFileURL(join(data, 'train.tsv')).href, pathToFileURL(join(data, 'gone.tsv')).href],
        },
        400,
        `data_uri.1: ${pathToFileURL(join(data, 'gone.tsv')).href} cannot be read (not_found)`,
      ],
      [
        { init_uri: `${pathToFileURL(join(data, 'empty')).href}/` },
        400,
        `init_uri: no objects under ${pathToFileURL(join(data, 'empty')).href}/`,
      ],
      // Storage outside what a caller may name (storage.file.roots: the temporary directory here).
      [
        { checkpoint_uri: 'file:///etc/interfleet-ckpt/' },
        403,
        'checkpoint_uri: file:///etc/interfleet-ckpt/ is outside the folders file:// may name (storage.file.roots: ',
      ],
      [{ checkpoint_uri: `${pathToFileURL(data).href}/../../../etc/ckpt/` }, 400, 'checkpoint_uri: '],
      [
        { shard: 'lines', data_uri: [pathToFileURL(join(data, 'train.tsv')).href, 'file:///etc/passwd'] },
        403,
        'data_uri.1: file:///etc/passwd is outside the folders file:// may name',
      ],
      [
        { shard: 'lines', data_uri: pathToFileURL(join(data, 'etc-link', 'passwd')).href },
        403,
        `data_uri: ${pathToFileURL(join(data, 'etc-link', 'passwd')).href} leads through a symbolic link out of `,
      ],
      [{ eval_uri: `${pathToFileURL(data).href}/%2e%2e/x` }, 400, 'eval_uri: '],
    ];
    for (const [over, status, message] of cases) {
      const [s, m] = await bad({ ...body, ...over });
      expect([s, m], JSON.stringify(over)).toEqual([status, expect.stringContaining(message)]);
    }
    // Nothing was recorded nor queued.
    expect(await env.store.openIds('p')).toEqual([]);
    expect(await env.fleet.redis.hlen(`${env.fleet.prefix}:{training-index}:pools`)).toBe(0);
    expect(await env.train.count()).toBe(0);
  });

  it('a job still open at its deadline fails with the reason and its running rank is stopped', async () => {
    const env = await setup();
    const deadline = new Date(Date.now() + 1500).toISOString();
    const { json: job } = await env.post({ ...gang(1, { sleepMs: 30_000 }).body, deadline });
    expect(job).toMatchObject({ status: 'queued', deadline: Math.floor(Date.parse(deadline) / 1000) });
    const failed = await tickUntil(env, async () => {
      const j = await env.get(job.id);
      return j.status === 'failed' ? j : undefined;
    });
    expect(failed.error).toBe(`deadline ${deadline} passed (running round 1 of 1)`);
    const rank = await tickUntil(env, async () => {
      const j = await env.train.getJob(rankJobId(job.id, 1, 0));
      return j?.finishedOn ? j : undefined;
    });
    expect(rank.returnvalue).toEqual({ status: 'stopped' });
  });

  it('data that cannot be read when a rank pulls it fails the job with the reason, without gang restarts', async () => {
    const env = await setup();
    const file = join(dir, 'vanishing.tsv');
    await writeFile(file, 'good\t1\n');
    const { json: job } = await env.post({ ...gang(1).body, shard: 'lines', data_uri: pathToFileURL(file).href });
    expect(job.status).toBe('queued');
    await rm(file);
    const failed = await tickUntil(env, async () => {
      const j = await env.get(job.id);
      return j.status === 'failed' ? j : undefined;
    });
    expect(failed.error).toContain(`rank 0 of round 1: pulling its files failed:`);
    expect(failed.error).toContain('vanishing.tsv');
    expect((failed as unknown as { restarts: number }).restarts).toBe(0);
  });
});
