/**
 * A rank holds no keys to the fleet, with real processes: the gpu-worker runs as its own process
 * (tsx from the sources) whose environment holds the Redis URL, cloud credentials and their config
 * paths, API keys and its own INTERFLEET_* config (test/helpers/worker-secrets.ts); the producer's
 * API and the scheduler run in the test. A `rounds` job whose rank and reduce program
 * (test/fixtures/training-env-dump.mjs) write their whole environment to storage: neither holds any
 * of the worker's variables; both hold their own, the pool's declared one, and a HOME and TMPDIR of
 * their own. A job put on the queue without the API, naming a program off the pool's list, fails
 * with the reason and never spawns: straight onto BullMQ (no training job at all), and written to
 * the training store behind the API's back (the scheduler admits it; the worker refuses it).
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RANK_JOB_NAME, rankJobFor, type TrainingSpec } from '../../common/contracts/training.ts';
import { silentLogger } from '../../common/logger.ts';
import { queueName, rankJobId } from '../../common/topology.ts';
import { newTrainingJobId, TrainingStore } from '../../common/training/training-state.ts';
import { startProducer, type RunningProducer } from '../../producer/server.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { startRole, type RoleProcess } from '../helpers/role-process.ts';
import { trainingApi } from '../helpers/training-api.ts';
import { until } from '../helpers/until.ts';
import { forbiddenInRank, workerSecrets } from '../helpers/worker-secrets.ts';

const node = process.execPath;
const fixture = resolve(import.meta.dirname, '../fixtures/training-env-dump.mjs');

const yaml = `
scheduler: { renewEveryMs: 200, balanceEveryMs: 200, metricsPort: -1 }
batch: { admitEveryMs: 200 }
worker: { heartbeatMs: 100, metricsPort: -1 }
pools:
  - name: p
    backend: echo
    lanes:
      realtime: { concurrency: 1 }
      bulk: { concurrency: 0 }
      training: { concurrency: 1, programs: ['${node}'], env: { HF_HOME: /models/hf } }
`;

interface ApiJob {
  id: string;
  status: string;
  error: string | null;
  models: { round: number; uri: string }[];
  ranks: { round: number; rank: number; status: string; checkpoint_uri: string; error?: string | null }[];
}

let dir: string;
let prefix: string;
let producer: RunningProducer;
let worker: RoleProcess;
let redis: Redis;
let closeScheduler: () => Promise<void>;
const api = trainingApi<ApiJob>(() => producer.url);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-rank-env-'));
  prefix = `t-rankenv-${randomUUID().slice(0, 8)}`;
  const configPath = join(dir, 'config.yaml');
  await writeFile(configPath, yaml);
  const config = testConfig(yaml, { INTERFLEET_PREFIX: prefix });
  producer = await startProducer(config, { logger: silentLogger(), port: 0 });
  const scheduler = await startScheduler(config, { logger: silentLogger() });
  closeScheduler = () => scheduler.close();
  redis = new Redis(REDIS_URL);
  // The worker's HOME holds what a cloud CLI keeps there; rank directories go under the test's folder.
  const home = join(dir, 'worker-home');
  await mkdir(join(home, '.oci'), { recursive: true });
  await writeFile(join(home, '.oci', 'config'), '[DEFAULT]\nkey_file=~/.oci/key.pem\n');
  const tmp = join(dir, 'tmp');
  await mkdir(tmp);
  worker = startRole('worker', {
    ...workerSecrets,
    // The worker's own, real: it must reach Redis and read its config.
    REDIS_URL,
    INTERFLEET_CONFIG: configPath,
    INTERFLEET_PREFIX: prefix,
    HOME: home,
    TMPDIR: tmp,
  });
  await worker.ready();
}, 60_000);

afterAll(async () => {
  await worker?.kill();
  await closeScheduler?.();
  await producer?.close(0);
  if (redis) {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  }
  await rm(dir, { recursive: true, force: true });
});

/** The environment a program wrote to `<uri>env.json`. */
const envAt = async (uri: string): Promise<Record<string, string>> =>
  JSON.parse(await readFile(join(fileURLToPath(uri), 'env.json'), 'utf8')) as Record<string, string>;

function expectNoWorkerKeys(env: Record<string, string>, workDir: string): void {
  for (const name of forbiddenInRank) expect(env, name).not.toHaveProperty(name);
  // Not under another name either: no value of the worker's secrets appears anywhere.
  const values = Object.values(env).join('\n');
  for (const secret of ['s3cret', 'aws-secret', 'sk-fleet-admin', 'sk-fleet-worker', 'sk-upstream', 'hf_secret']) {
    expect(values).not.toContain(secret);
  }
  expect(values).not.toContain('/var/secrets/google');
  expect(values).not.toContain('worker-home');
  // Its own HOME and TMPDIR, inside its working directory, and the pool's declared variable.
  expect(env.HOME).toBe(join(workDir, 'home'));
  expect(env.TMPDIR).toBe(join(workDir, 'tmp'));
  expect(env.HF_HOME).toBe('/models/hf');
  expect(env.PATH).toBe(process.env.PATH);
  // Nothing else of the worker's: every name is an inherited one, the declared one or the program's own.
  const allowed =
    /^(PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ|LD_LIBRARY_PATH|CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|NVIDIA_VISIBLE_DEVICES|NVIDIA_DRIVER_CAPABILITIES|NCCL_[A-Z0-9_]+|HOME|TMPDIR|HF_HOME|RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|TORCHELASTIC_RESTART_COUNT|INTERFLEET_[A-Z_]+)$/;
  // Node itself may add a few variables to a child's environment (none of the worker's).
  expect(Object.keys(env).filter((n) => !allowed.test(n))).toEqual([]);
  const interfleet = Object.keys(env).filter((n) => n.startsWith('INTERFLEET_'));
  for (const name of ['INTERFLEET_CONFIG', 'INTERFLEET_PREFIX', 'INTERFLEET_API_KEYS', 'INTERFLEET_API_KEY']) {
    expect(interfleet).not.toContain(name);
  }
}

describe("a rank's environment (real worker process)", () => {
  it('holds none of the worker’s keys, in a rank and in a reduce program; the rank’s own variables are there', async () => {
    const ckpt = join(dir, 'ckpt');
    const res = await api.post({
      pool: 'p',
      command: node,
      args: [fixture],
      data_uri: `${pathToFileURL(join(dir, 'unused')).href}/`,
      shard: 'none',
      mode: 'rounds',
      workers: 1,
      rounds: 1,
      checkpoint_uri: `${pathToFileURL(ckpt).href}/`,
      params: { lr: 0.5 },
      reduce: { command: node, args: [fixture] },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const job = await api.ended(res.json.id as string, 60_000);
    expect(job.error, worker.output().slice(-3000)).toBeNull();
    expect(job.status).toBe('succeeded');

    const rank = await envAt(job.ranks[0]!.checkpoint_uri);
    expectNoWorkerKeys(rank, rank.INTERFLEET_WORK_DIR!);
    expect(rank).toMatchObject({
      RANK: '0',
      WORLD_SIZE: '1',
      INTERFLEET_RANK: '0',
      INTERFLEET_ROUND: '1',
      INTERFLEET_JOB_ID: job.id,
      INTERFLEET_PARAMS: '{"lr":0.5}',
      INTERFLEET_CHECKPOINT_URI: job.ranks[0]!.checkpoint_uri,
    });

    const reduce = await envAt(job.models[0]!.uri);
    expectNoWorkerKeys(reduce, reduce.INTERFLEET_WORK_DIR!);
    expect(reduce).toMatchObject({ INTERFLEET_ROUND: '1', INTERFLEET_WORLD_SIZE: '1', INTERFLEET_JOB_ID: job.id });
    expect(JSON.parse(reduce.INTERFLEET_INPUT_URIS!)).toEqual([job.ranks[0]!.checkpoint_uri]);
  }, 90_000);

  it('a rank job put straight on the queue naming a program off the list fails with the reason and never runs', async () => {
    const marker = join(dir, 'ran-from-queue');
    const spec = offListSpec(marker);
    const queue = new Queue(queueName('train', 'p'), { connection: redis.duplicate(), prefix });
    try {
      const added = await queue.add(RANK_JOB_NAME, rankJobFor(spec, 1, 0), { jobId: rankJobId(spec.id, 1, 0) });
      const failed = await until(async () => {
        const j = await queue.getJob(added.id!);
        return (await j?.isFailed()) ? queue.getJob(added.id!) : undefined;
      }, 30_000);
      expect(failed.failedReason).toBe(
        "rank 0 of round 1: command '/bin/sh' is not among this pool's training programs",
      );
      expect(failed.attemptsMade).toBe(1); // unrecoverable: no retry
      expect(existsSync(marker)).toBe(false);
    } finally {
      await queue.close();
    }
  }, 60_000);

  it('a training job written behind the API’s back with an off-list program fails with the reason; nothing spawned', async () => {
    const marker = join(dir, 'ran-from-store');
    const spec = offListSpec(marker);
    await new TrainingStore(redis, prefix).create(spec); // as the API would, without its check
    const job = await api.ended(spec.id, 30_000);
    const reason = "rank 0 of round 1: command '/bin/sh' is not among this pool's training programs";
    expect(job.status).toBe('failed');
    expect(job.error).toContain(reason);
    const queue = new Queue(queueName('train', 'p'), { connection: redis.duplicate(), prefix });
    try {
      const rankJob = await queue.getJob(rankJobId(spec.id, 1, 0));
      expect(rankJob?.failedReason).toBe(reason);
    } finally {
      await queue.close();
    }
    expect(existsSync(marker)).toBe(false);
  }, 60_000);
});

/** A gang of one whose command is a shell (not on the pool's list) that would leave `marker` if it ran. */
function offListSpec(marker: string): TrainingSpec {
  return {
    id: newTrainingJobId(Date.now()),
    pool: 'p',
    tenant: 'default',
    command: '/bin/sh',
    args: ['-c', `touch ${marker}`],
    dataUri: 'file:///unused/',
    shard: 'none',
    mode: 'rounds',
    initUri: null,
    checkpointPrefix: `${pathToFileURL(join(dir, 'off-list')).href}/`,
    params: {},
    workers: 1,
    rounds: 1,
    priority: 0,
    attempts: 1,
    maxRestarts: 0,
    createdAt: Date.now(),
  };
}
