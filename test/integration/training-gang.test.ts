/**
 * Gang mode on a real Redis: the producer's API, a leading scheduler and
 * three real gpu-workers (one training slot each), running
 * test/fixtures/training-gang.mjs, whose ranks meet at rank 0's address
 * (MASTER_ADDR / MASTER_PORT, published through the gang's state) and succeed
 * only when all of them did. One rank's program is killed with SIGKILL: the
 * whole gang is stopped and starts again from the round's checkpoints.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { queueName, rankJobId } from '../../common/topology.ts';
import { apiTrainingJobSchema, type ApiTrainingJob } from '../../producer/client/training-wire.ts';
import { formatTrainingJob, formatTrainingProgress } from '../../producer/cli/train-commands.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { trainingApi } from '../helpers/training-api.ts';
import { until } from '../helpers/until.ts';

const fixture = resolve(import.meta.dirname, '../fixtures/training-gang.mjs');

const yaml = `
scheduler: { renewEveryMs: 200, balanceEveryMs: 200 }
batch: { admitEveryMs: 200 }
worker: { heartbeatMs: 100 }
pools:
  - name: p
    backend: echo
    lanes:
      realtime: { concurrency: 1 }
      bulk: { concurrency: 0 }
      training: { concurrency: 1, programs: ['${process.execPath}'], advertiseHost: 127.0.0.1 }
`;

let dir: string;
let fleet: TestFleet;
let train: Queue;
let closeScheduler: () => Promise<void>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-gang-'));
  fleet = await startFleet({ yaml, workers: 3 });
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
const cancels: string[] = [];
afterEach(async () => {
  for (const id of cancels.splice(0))
    await fetch(`${fleet.producer.url}/v1/training/jobs/${id}/cancel`, { method: 'POST' });
});

const {
  post,
  get,
  ended: final,
} = trainingApi<ApiTrainingJob>(
  () => fleet.producer.url,
  (json) => apiTrainingJobSchema.parse(json),
);

let runs = 0;
async function submit(body: Record<string, unknown>): Promise<{ job: ApiTrainingJob; ckpt: string; marks: string }> {
  const run = join(dir, `run-${runs++}`);
  const marks = join(run, 'marks');
  await mkdir(marks, { recursive: true });
  const ckpt = join(run, 'ckpt');
  const { status, json } = await post({
    pool: 'p',
    command: process.execPath,
    args: [fixture],
    data_uri: `${pathToFileURL(join(run, 'unused')).href}/`, // shard none: never read
    shard: 'none',
    checkpoint_uri: `${pathToFileURL(ckpt).href}/`,
    ...body,
    params: { markDir: marks, ...(body.params as object) },
  });
  expect(status, JSON.stringify(json)).toBe(200);
  const job = apiTrainingJobSchema.parse(json);
  cancels.push(job.id);
  return { job, ckpt, marks };
}
const checkpoint = async (ckpt: string, path: string) =>
  JSON.parse(await readFile(join(ckpt, path, 'model.json'), 'utf8')) as Record<string, unknown>;

describe('gang mode', () => {
  it('waits whole with a reason when the gang is larger than the slots; a gang of 3 meets at rank 0 each round', async () => {
    // 4 ranks on 3 slots: never a partial start, and the CLI says why.
    const big = await submit({ workers: 4 });
    const { job, ckpt } = await submit({ workers: 3, rounds: 2 });
    const done = await final(job.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    const held = await get(big.job.id);
    expect(held.status).toBe('queued');
    expect(held.waiting_reason).toBe('exceeds_pool_slots');
    for (let rank = 0; rank < 4; rank++) expect(await train.getJob(rankJobId(big.job.id, 1, rank))).toBeUndefined();
    const waiting =
      "waiting: exceeds_pool_slots (4 ranks need more training slots than all the pool's ready workers have; none started)";
    expect(formatTrainingProgress(held, 1000)).toContain(waiting);
    expect(formatTrainingJob(held)).toContain('restarted 0 of at most 3 time(s)');

    // Every rank met rank 0 at the address rank 0 published, and round 2 resumed from round 1's checkpoints.
    for (const round of [1, 2]) {
      const zero = await checkpoint(ckpt, `round-${round}/rank-0`);
      expect(zero).toMatchObject({ worldSize: 3, round, restart: 0, peers: [1, 2], step: round });
      expect((zero.master as { addr: string }).addr).toBe('127.0.0.1');
      for (const rank of [1, 2]) {
        expect(await checkpoint(ckpt, `round-${round}/rank-${rank}`)).toMatchObject({
          rank,
          round,
          master: zero.master,
          step: round,
        });
      }
    }
    expect(done).toMatchObject({ max_restarts: 3, restarts: 0, restart_reason: null });
  }, 90_000);

  it('one rank killed: the whole gang is stopped and restarts from the round’s checkpoints', async () => {
    const { job, ckpt, marks } = await submit({ workers: 3, rounds: 2, params: { holdMs: 30_000, holdRound: 2 } });
    // Round 2's first run has met (every rank marked) and holds: kill rank 1's program.
    const started = await until(async () => {
      const files = (await readdir(marks)).filter((f) => f.startsWith('r2-') && f.includes('-g0-'));
      return files.length === 3 ? files : undefined;
    }, 60_000);
    const victim = started.find((f) => f.startsWith('r2-k1-'))!;
    const before = await get(job.id);
    process.kill(Number(victim.split('-').at(-1)), 'SIGKILL');

    const done = await final(job.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(1);
    expect(done.restart_reason).toBe('rank 1 of round 2: killed by SIGKILL');
    expect(formatTrainingJob(done)).toContain('restarted 1 of at most 3 time(s)');
    // The run it stopped: its other ranks were asked to stop (not left to time out), and settled nothing.
    for (const rank of [0, 2]) {
      const stopped = (await train.getJob(rankJobId(job.id, 2, rank)))!;
      expect(stopped.returnvalue).toEqual({ status: 'stopped' });
    }
    expect(before.ranks.filter((r) => r.round === 2).every((r) => r.status === 'running')).toBe(true);
    // The second run met again and resumed from round 1's checkpoints, writing beside the stopped run.
    const zero = await checkpoint(ckpt, 'round-2/restart-1/rank-0');
    expect(zero).toMatchObject({ round: 2, restart: 1, peers: [1, 2], step: 2 });
    expect(done.ranks.filter((r) => r.round === 2).map((r) => [r.rank, r.status, r.checkpoint_uri])).toEqual(
      [0, 1, 2].map((k) => [k, 'succeeded', `${pathToFileURL(ckpt).href}/round-2/restart-1/rank-${k}/`]),
    );
    expect((await readdir(marks)).filter((f) => f.startsWith('r2-') && f.includes('-g1-'))).toHaveLength(3);
  }, 90_000);

  it('with no restart left, a killed rank fails the job with its reason', async () => {
    const { job, marks } = await submit({ workers: 2, max_restarts: 0, params: { holdMs: 30_000 } });
    const started = await until(async () => {
      const files = await readdir(marks);
      return files.length === 2 ? files : undefined;
    }, 60_000);
    process.kill(
      Number(
        started
          .find((f) => f.startsWith('r1-k0-'))!
          .split('-')
          .at(-1),
      ),
      'SIGKILL',
    );
    const done = await final(job.id);
    expect(done.status).toBe('failed');
    expect(done.error).toBe('rank 0 of round 1: killed by SIGKILL');
    expect(done.restarts).toBe(0);
  }, 90_000);
});
