/**
 * Resume after loss, with real processes: the scheduler and the gpu-workers
 * run as their own processes (tsx from the sources), the producer's HTTP API
 * in the test. A `rounds` job of 2 ranks × 3 rounds runs
 * test/fixtures/training-counter.mjs, whose model after round r is w = r
 * exactly when every round started from the model of the round before. Mid
 * round 2 the test kills with SIGKILL one worker (then starts another, as a
 * pod is replaced), or the scheduler and every worker (then starts them all
 * again). Either way the job must succeed with each round's model written once
 * from the one before, the job's round never skipping or going back, and the
 * lost rank run again in a fresh directory from the round's starting model.
 * In gang mode (test/fixtures/training-gang.mjs) the loss of one rank's
 * worker stops the whole gang, which meets again and resumes from the round's
 * checkpoints.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { processAlive } from '../../common/process.ts';
import { silentLogger } from '../../common/logger.ts';
import { startProducer, type RunningProducer } from '../../producer/server.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { startRole, type RoleProcess } from '../helpers/role-process.ts';
import { trainingApi, type TrainingApi } from '../helpers/training-api.ts';
import { until } from '../helpers/until.ts';
import { Redis } from 'ioredis';

const fixture = resolve(import.meta.dirname, '../fixtures/training-counter.mjs');
const gangFixture = resolve(import.meta.dirname, '../fixtures/training-gang.mjs');

// Locks of 2 s checked every second: a lost rank runs again within about 3 s.
const yaml = `
scheduler: { renewEveryMs: 200, leaseTtlMs: 1500, balanceEveryMs: 200, metricsPort: -1 }
batch: { admitEveryMs: 200 }
worker: { heartbeatMs: 200, heartbeatTtlMs: 1500, metricsPort: -1 }
pools:
  - name: p
    backend: echo
    lanes:
      realtime: { concurrency: 1 }
      bulk: { concurrency: 0 }
      training: { concurrency: 1, programs: ['${process.execPath}'], lockDurationMs: 2000, stalledIntervalMs: 1000 }
`;

interface ApiJob {
  id: string;
  status: string;
  round: number;
  error: string | null;
  restarts: number;
  restart_reason: string | null;
  models: { round: number; uri: string }[];
  ranks: { round: number; rank: number; status: string; worker: string; checkpoint_uri: string }[];
}

let dir: string;
let configPath: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-resume-'));
  configPath = join(dir, 'config.yaml');
  await writeFile(configPath, yaml);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Env {
  prefix: string;
  work: string;
  producer: RunningProducer;
  roles: RoleProcess[];
  start(role: 'worker' | 'scheduler'): RoleProcess;
  post: TrainingApi<ApiJob>['post'];
  get(id: string): Promise<ApiJob>;
}

async function setup(): Promise<Env> {
  const prefix = `t-resume-${randomUUID().slice(0, 8)}`;
  const work = await mkdtemp(join(dir, 'run-'));
  const config = testConfig(yaml, { INTERFLEET_PREFIX: prefix });
  const producer = await startProducer(config, { logger: silentLogger(), port: 0 });
  const roles: RoleProcess[] = [];
  cleanups.push(async () => {
    await Promise.all(roles.map((r) => r.kill()));
    await producer.close(0);
    const redis = new Redis(REDIS_URL);
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });
  // Rank directories under the test's folder (os.tmpdir() follows TMPDIR): a killed worker leaves its own.
  const tmp = join(work, 'tmp');
  await mkdir(tmp);
  const api = trainingApi<ApiJob>(() => producer.url);
  return {
    prefix,
    work,
    producer,
    roles,
    start(role) {
      const p = startRole(role, { INTERFLEET_CONFIG: configPath, INTERFLEET_PREFIX: prefix, REDIS_URL, TMPDIR: tmp });
      roles.push(p);
      return p;
    },
    post: api.post,
    get: api.get,
  };
}

/** Submits the 2 × 3 rounds job; returns its id, its checkpoint folder and where ranks mark their starts. */
async function submit(env: Env): Promise<{ id: string; ckpt: string; marks: string }> {
  const marks = join(env.work, 'marks');
  const ckpt = join(env.work, 'ckpt');
  await mkdir(marks);
  const res = await env.post({
    pool: 'p',
    command: process.execPath,
    args: [fixture],
    data_uri: `${pathToFileURL(join(env.work, 'unused')).href}/`, // shard none: never read
    shard: 'none',
    mode: 'rounds',
    workers: 2,
    rounds: 3,
    checkpoint_uri: `${pathToFileURL(ckpt).href}/`,
    params: { markDir: marks, sleepMs: 1500 },
  });
  expect(res.status, JSON.stringify(res.json)).toBe(200);
  return { id: res.json.id as string, ckpt, marks };
}

/** Every (status, round) the job shows, polled until it is final; consecutive repeats folded. */
function watch(env: Env, id: string): Promise<string[]> {
  return (async () => {
    const seen: string[] = [];
    for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
      const job = await env.get(id).catch(() => undefined);
      const step = job && `${job.status}:${job.round}`;
      if (step && seen.at(-1) !== step) seen.push(step);
      if (job && ['succeeded', 'failed', 'cancelled'].includes(job.status)) return seen;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`the job did not end: ${seen.join(' ')}`);
  })();
}

const lifecycle = [1, 2, 3].flatMap((r) => [`queued:${r}`, `running:${r}`, `reducing:${r}`]).concat('succeeded:3');

/** The job's path: the life cycle's steps in order, none twice (polling may miss some). */
function expectInOrder(seen: string[]): void {
  const at = seen.map((s) => lifecycle.indexOf(s));
  expect(at, seen.join(' ')).not.toContain(-1);
  for (let i = 1; i < at.length; i++) expect(at[i]!, seen.join(' ')).toBeGreaterThan(at[i - 1]!);
  expect(seen.at(-1)).toBe('succeeded:3');
}

/** Each round's model, as the reduce wrote it once: w = r, started from round r-1's. */
async function expectModels(ckpt: string): Promise<void> {
  for (const r of [1, 2, 3]) {
    const model = join(ckpt, `round-${r}`, 'model');
    const meta = JSON.parse(await readFile(join(model, 'model.json'), 'utf8'));
    expect(meta).toMatchObject({ round: r, initRound: r === 1 ? null : r - 1, freshOutput: true });
    expect((await readFile(join(model, 'w.f32'))).readFloatLE(0)).toBe(r);
  }
}

/** The ranks of round 2 once both have started: their workers' ids. */
async function round2Running(env: Env, id: string, marks: string): Promise<ApiJob> {
  return until(async () => {
    const started = (await readdir(marks)).filter((f) => f.startsWith('r2-'));
    if (started.length < 2) return undefined;
    const job = await env.get(id);
    const r2 = job.ranks.filter((r) => r.round === 2 && r.status === 'running');
    return r2.length === 2 ? job : undefined;
  }, 60_000);
}

const pidOf = (workerId: string): number => Number(/-(\d+)-[0-9a-f]{8}$/.exec(workerId)![1]);

describe('training resumes after loss (real processes)', () => {
  it('kill -9 of a worker mid-round: its rank runs again from the round’s model and the job completes', async () => {
    const env = await setup();
    const scheduler = env.start('scheduler');
    const workers = [env.start('worker'), env.start('worker')];
    await Promise.all([scheduler, ...workers].map((p) => p.ready()));
    const { id, ckpt, marks } = await submit(env);
    const path = watch(env, id);

    const job = await round2Running(env, id, marks);
    const lost = job.ranks.find((r) => r.round === 2 && r.rank === 1)!;
    const victim = workers.find((w) => w.pid === pidOf(lost.worker))!;
    expect(victim).toBeDefined();
    const orphan = Number(
      (await readdir(marks))
        .find((f) => f.startsWith('r2-k1-'))!
        .split('-')
        .at(-1),
    );
    await victim.kill();
    // Its pod is replaced, as a Deployment would; the command the dead one left does not linger (it ends, or the
    // new worker's sweep kills it: the gang test below holds its command long enough to need the sweep).
    await env.start('worker').ready();
    await until(async () => (processAlive(orphan) ? undefined : true), 10_000);

    const seen = await path;
    const done = await env.get(id);
    expect(done.error, env.roles.map((r) => r.output()).join('\n')).toBeNull();
    expect(done.status).toBe('succeeded');
    expectInOrder(seen);
    expect(done.models.map((m) => m.round)).toEqual([1, 2, 3]);
    await expectModels(ckpt);
    // The lost rank ran twice (the second time elsewhere), and its record is the run that finished.
    expect((await readdir(marks)).filter((f) => f.startsWith('r2-k1-'))).toHaveLength(2);
    const rerun = done.ranks.find((r) => r.round === 2 && r.rank === 1)!;
    expect(rerun).toMatchObject({ status: 'succeeded' });
    expect(rerun.worker).not.toBe(lost.worker);
    expect(done.ranks.map((r) => `${r.round}:${r.rank}:${r.status}`)).toEqual(
      [1, 2, 3].flatMap((r) => [`${r}:0:succeeded`, `${r}:1:succeeded`]),
    );
    // It started over in a fresh directory, from round 1's model.
    const out = JSON.parse(await readFile(join(ckpt, 'round-2', 'rank-1', 'model.json'), 'utf8'));
    expect(out).toMatchObject({ round: 2, initRound: 1, freshOutput: true });
  }, 120_000);

  it('the scheduler and every worker killed mid-round and started again: the job completes from its checkpoint', async () => {
    const env = await setup();
    const first = [env.start('scheduler'), env.start('worker'), env.start('worker')];
    await Promise.all(first.map((p) => p.ready()));
    const { id, ckpt, marks } = await submit(env);
    const path = watch(env, id);

    await round2Running(env, id, marks);
    await Promise.all(first.map((p) => p.kill()));
    expect((await env.get(id)).status).toBe('running');
    const second = [env.start('scheduler'), env.start('worker'), env.start('worker')];
    await Promise.all(second.map((p) => p.ready()));

    const seen = await path;
    const done = await env.get(id);
    expect(done.error, env.roles.map((r) => r.output()).join('\n')).toBeNull();
    expect(done.status).toBe('succeeded');
    expectInOrder(seen);
    await expectModels(ckpt);
    // Both ranks of round 2 ran again on the new workers.
    for (const k of [0, 1]) expect((await readdir(marks)).filter((f) => f.startsWith(`r2-k${k}-`))).toHaveLength(2);
    const pids = new Set(second.map((p) => p.pid));
    for (const r of done.ranks.filter((x) => x.round >= 2)) expect(pids.has(pidOf(r.worker))).toBe(true);
  }, 150_000);

  it('gang mode: kill -9 of a rank’s worker stops the whole gang, which meets again and resumes from its checkpoints', async () => {
    const env = await setup();
    const workers = [env.start('worker'), env.start('worker')];
    await Promise.all([env.start('scheduler'), ...workers].map((p) => p.ready()));
    const marks = join(env.work, 'marks');
    const ckpt = join(env.work, 'ckpt');
    await mkdir(marks);
    const res = await env.post({
      pool: 'p',
      command: process.execPath,
      args: [gangFixture],
      data_uri: `${pathToFileURL(join(env.work, 'unused')).href}/`, // shard none: never read
      shard: 'none',
      mode: 'gang',
      workers: 2,
      rounds: 2,
      checkpoint_uri: `${pathToFileURL(ckpt).href}/`,
      params: { markDir: marks, holdMs: 60_000, holdRound: 2 },
    });
    const id = res.json.id as string;
    // Round 2's first run has met and holds: its rank 1's worker dies.
    const held = await until(async () => {
      const met = (await readdir(marks)).filter((f) => f.startsWith('r2-') && f.includes('-g0-'));
      return met.length === 2 ? met : undefined;
    }, 60_000);
    const lost = (await env.get(id)).ranks.find((r) => r.round === 2 && r.rank === 1)!;
    await workers.find((w) => w.pid === pidOf(lost.worker))!.kill();
    // Its program runs on in its own process group (on OKE it goes with the pod): the new worker kills it.
    await env.start('worker').ready();
    const orphan = Number(
      held
        .find((f) => f.startsWith('r2-k1-'))!
        .split('-')
        .at(-1),
    );
    await until(async () => (processAlive(orphan) ? undefined : true), 10_000);

    const done = await until(async () => {
      const j = await env.get(id);
      return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
    }, 90_000);
    expect(done.error, env.roles.map((r) => r.output()).join('\n')).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(1);
    // Whichever saw the loss first: the leader (no heartbeat) or the rank's job run again after its lock lapsed.
    expect(done.restart_reason).toMatch(
      /^rank 1 of round 2 (lost: its worker .* stopped sending heartbeats|started again: its run was lost .*)$/,
    );
    // The second run met again, from round 1's checkpoints, writing beside the first.
    const zero = JSON.parse(await readFile(join(ckpt, 'round-2', 'restart-1', 'rank-0', 'model.json'), 'utf8'));
    expect(zero).toMatchObject({ round: 2, restart: 1, peers: [1], step: 2 });
    expect((await readdir(marks)).filter((f) => f.startsWith('r2-') && f.includes('-g1-'))).toHaveLength(2);
  }, 150_000);
});
