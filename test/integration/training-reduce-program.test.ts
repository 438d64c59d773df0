/**
 * A reduce program of the user's in `rounds` mode, end to end on a real
 * Redis: the producer's API, a leading scheduler and two real gpu-workers
 * running test/fixtures/training-counter.mjs as the ranks (rank k writes
 * w + 1 + k from the round's model) and test/fixtures/training-reduce-max.mjs
 * as the reduce (the max of the ranks' w, where the built-in would average).
 * Real processes, a file:// bucket.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { queueName, reduceJobId } from '../../common/topology.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { REDIS_URL, startFleet, type TestFleet } from '../helpers/fleet.ts';
import { trainingApi } from '../helpers/training-api.ts';

const counter = resolve(import.meta.dirname, '../fixtures/training-counter.mjs');
const reduceMax = resolve(import.meta.dirname, '../fixtures/training-reduce-max.mjs');
const node = process.execPath;

const yaml = `
scheduler: { renewEveryMs: 200, balanceEveryMs: 200 }
worker: { heartbeatMs: 100 }
pools:
  - name: p
    backend: echo
    lanes: { realtime: { concurrency: 1 }, bulk: { concurrency: 0 }, training: { concurrency: 1, programs: ['${node}'] } }
`;

interface ApiJob {
  id: string;
  status: string;
  error: string | null;
  reduce: { command: string; args: string[] } | null;
  models: { round: number; uri: string }[];
}

let dir: string;
let fleet: TestFleet;
let train: Queue;
let closeScheduler: () => Promise<void>;

beforeAll(async () => {
  // The workers run in this process: a REDIS_URL here must not reach the programs (the fixture records it).
  process.env.REDIS_URL ??= REDIS_URL;
  dir = await mkdtemp(join(tmpdir(), 'interfleet-reduce-program-'));
  await writeFile(join(dir, 'data.txt'), 'one\ntwo\n');
  fleet = await startFleet({ yaml, workers: 2 });
  const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  closeScheduler = () => scheduler.close();
  train = new Queue(queueName('train', 'p'), { connection: fleet.redis.duplicate(), prefix: fleet.prefix });
}, 30_000);

afterAll(async () => {
  await train?.close();
  await closeScheduler?.();
  await fleet?.stop();
  await rm(dir, { recursive: true, force: true });
});

const { post, ended } = trainingApi<ApiJob>(() => fleet.producer.url);

/** A rounds job of 2 ranks of the counter, reduced by the max program. */
const roundsJob = (name: string, params: Record<string, unknown>, rounds = 3) => ({
  pool: 'p',
  command: node,
  args: [counter],
  data_uri: pathToFileURL(join(dir, 'data.txt')).href,
  mode: 'rounds',
  rounds,
  workers: 2,
  checkpoint_uri: `${pathToFileURL(join(dir, name)).href}/`,
  params: { addRank: true, ...params },
  reduce: { command: node, args: [reduceMax] },
});

async function readModel(uri: string): Promise<{ w: number; meta: Record<string, unknown> }> {
  const path = fileURLToPath(uri);
  const meta = JSON.parse(await readFile(join(path, 'model.json'), 'utf8')) as Record<string, unknown>;
  return { w: (await readFile(join(path, 'w.f32'))).readFloatLE(0), meta };
}

describe('a reduce program of the user’s (rounds mode)', () => {
  it('makes each round’s model from the ranks’ outputs, starting from the round’s model', async () => {
    const { status, json } = await post(roundsJob('max', {}));
    expect(status, JSON.stringify(json)).toBe(200);
    expect(json.reduce).toEqual({ command: node, args: [reduceMax] });
    const job = await ended(json.id as string);
    expect(job.error).toBeNull();
    expect(job.status).toBe('succeeded');
    expect(job.models.map((m) => m.round)).toEqual([1, 2, 3]);
    // Ranks write w + 1 and w + 2 from the round's model w: the max gives 2, 4, 6 (the average 1.5, 3, 4.5).
    const models = await Promise.all(job.models.map((m) => readModel(m.uri)));
    expect(models.map((m) => m.w)).toEqual([2, 4, 6]);
    for (const [i, m] of models.entries()) {
      expect(m.meta).toMatchObject({ round: i + 1, reducedBy: 'max', ranks: 2, sawRedisUrl: false });
    }
    // init/ held the round's starting model: none in round 1, then the model of the round before.
    expect(models.map((m) => m.meta.initW)).toEqual([null, 2, 4]);
    // Its metric lines are the reduce job's log.
    const { logs } = await train.getJobLogs(reduceJobId(job.id, 2));
    expect(logs.map((l) => JSON.parse(l) as unknown)).toContainEqual({ metric: 'w_max', value: 4, step: 2 });
  }, 90_000);

  it('fails the job with the exit code and stderr’s end when the program exits non-zero', async () => {
    const { status, json } = await post(roundsJob('fails', { failReduceRound: 2 }));
    expect(status, JSON.stringify(json)).toBe(200);
    const job = await ended(json.id as string);
    expect(job.status).toBe('failed');
    expect(job.error).toContain('reduce of round 2');
    expect(job.error).toContain('reduce program exit code 1; stderr: reduce of round 2: the ranks disagree');
    // Round 1's model stands; round 2 has none.
    expect(job.models.map((m) => m.round)).toEqual([1]);
  }, 90_000);

  it('refuses a reduce command that is not among the pool’s training programs, naming the field', async () => {
    const { status, json } = await post({
      ...roundsJob('refused', {}),
      reduce: { command: '/bin/sh', args: ['-c', 'id'] },
    });
    expect(status).toBe(400);
    expect(JSON.stringify(json)).toContain(
      `reduce.command: '/bin/sh' is not among pool 'p''s training programs (lanes.training.programs: ${node})`,
    );
  });

  it('refuses a reduce in gang mode and a malformed one, each naming its field', async () => {
    const gang = await post({ ...roundsJob('gang', {}), mode: 'gang' });
    expect(gang.status).toBe(400);
    expect(JSON.stringify(gang.json)).toContain('reduce: reduce is for rounds mode');
    const bad = await post({ ...roundsJob('bad', {}), reduce: { command: '', args: 'x', shell: true } });
    expect(bad.status).toBe(400);
    const text = JSON.stringify(bad.json);
    expect(text).toContain('reduce.command: command must not be empty');
    expect(text).toContain('reduce.args: args must be an array of strings');
    expect(text).toContain('unsupported field(s): shell');
  });
});
