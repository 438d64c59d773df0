/**
 * Training in `rounds` mode end to end on a real Redis: the producer's API, a
 * leading scheduler and two real gpu-workers (one training slot each, the
 * default), running the built-in text classifier over the UCI sentiment
 * sentences in a file:// bucket. Each rank pulls its line shard, trains from
 * the round's model, uploads its output; each round's reduce averages the
 * ranks into the next round's model. The final model is read back and scored
 * on sentences no rank saw.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { predict, readModelDir } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { trainingApi } from '../helpers/training-api.ts';
import { until } from '../helpers/until.ts';

const sentences = resolve(import.meta.dirname, '../../../shared/data/sentiment-labelled-sentences');

const yaml = `
scheduler: { renewEveryMs: 200, balanceEveryMs: 200 }
worker: { heartbeatMs: 100 }
pools:
  - name: p
    backend: echo
    lanes: { realtime: { concurrency: 1 }, bulk: { concurrency: 0 } }
`;

interface ApiJob {
  id: string;
  status: string;
  round: number;
  error: string | null;
  models: { round: number; uri: string }[];
  ranks: { round: number; rank: number; status: string; metrics: Record<string, number> }[];
}

let dir: string;
let fleet: TestFleet;
let closeScheduler: () => Promise<void>;
const heldOut: Array<{ text: string; label: string }> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-rounds-'));
  // Every 10th sentence is held out for the score; the rest is the job's data, one object per source.
  await mkdir(join(dir, 'data'));
  for (const file of (await readdir(sentences)).filter((f) => f.endsWith('_labelled.txt'))) {
    const lines = (await readFile(join(sentences, file), 'utf8')).split(/\r\n|\n|\r/).filter((l) => l.includes('\t'));
    const train: string[] = [];
    lines.forEach((line, i) => {
      const [text, label] = line.split('\t') as [string, string];
      if (i % 10 === 0) heldOut.push({ text, label: label.trim() });
      else train.push(line);
    });
    await writeFile(join(dir, 'data', file), `${train.join('\n')}\n`);
  }
  fleet = await startFleet({ yaml, workers: 2 });
  const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  closeScheduler = () => scheduler.close();
}, 30_000);

afterAll(async () => {
  await closeScheduler?.();
  await fleet?.stop();
  await rm(dir, { recursive: true, force: true });
});

const { post, get } = trainingApi<ApiJob>(() => fleet.producer.url);

describe('training rounds with the built-in text classifier', () => {
  it('shards the data, averages each round, and ends with a model that classifies held-out sentences', async () => {
    const checkpoint = `${pathToFileURL(join(dir, 'ckpt')).href}/`;
    const { status, json } = await post({
      pool: 'p',
      command: 'builtin:text-classifier',
      data_uri: `${pathToFileURL(join(dir, 'data')).href}/`,
      mode: 'rounds',
      rounds: 3,
      workers: 2,
      checkpoint_uri: checkpoint,
      params: { epochs: 3, holdout: 0.1 },
    });
    expect(status, JSON.stringify(json)).toBe(200);
    const id = json.id as string;
    const job = await until(async () => {
      const j = await get(id);
      return j.status === 'succeeded' || j.status === 'failed' ? j : undefined;
    }, 90_000);
    expect(job.error).toBeNull();
    expect(job.status).toBe('succeeded');
    expect(job.models.map((m) => m.round)).toEqual([1, 2, 3]);
    // Every rank of every round ran once and reported its evaluation on its own held-out lines.
    expect(job.ranks.map((r) => `${r.round}:${r.rank}:${r.status}`)).toEqual([
      '1:0:succeeded',
      '1:1:succeeded',
      '2:0:succeeded',
      '2:1:succeeded',
      '3:0:succeeded',
      '3:1:succeeded',
    ]);
    for (const r of job.ranks) expect(r.metrics.eval_accuracy).toBeGreaterThan(0.5);

    // The ranks' shards were disjoint halves of the data: their example counts add up to it.
    const lines = (
      await Promise.all((await readdir(join(dir, 'data'))).map((f) => readFile(join(dir, 'data', f), 'utf8')))
    )
      .join('')
      .split('\n')
      .filter((l) => l.includes('\t')).length;
    const round1 = job.ranks.filter((r) => r.round === 1);
    const seen = round1.reduce((n, r) => n + (r.metrics.examples ?? 0), 0);
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(lines);

    const model = await readModelDir(new URL(job.models.at(-1)!.uri).pathname);
    const correct = heldOut.filter((s) => predict(model, s.text).label === s.label).length;
    const accuracy = correct / heldOut.length;
    const majority = Math.max(...['0', '1'].map((l) => heldOut.filter((s) => s.label === l).length)) / heldOut.length;
    console.log(
      `held-out accuracy ${accuracy.toFixed(3)} (${heldOut.length} sentences; majority ${majority.toFixed(3)})`,
    );
    expect(accuracy).toBeGreaterThan(0.7);
    expect(accuracy).toBeGreaterThan(majority + 0.1);
  }, 120_000);

  it('refuses a command that is not among the pool’s training programs, naming the list', async () => {
    const { status, json } = await post({
      pool: 'p',
      command: '/bin/sh',
      args: ['-c', 'cat /etc/passwd'],
      data_uri: `${pathToFileURL(join(dir, 'data')).href}/`,
      workers: 1,
      checkpoint_uri: `${pathToFileURL(join(dir, 'refused')).href}/`,
    });
    expect(status).toBe(400);
    expect(JSON.stringify(json)).toContain(
      "command: '/bin/sh' is not among pool 'p''s training programs (lanes.training.programs: builtin:text-classifier)",
    );
  });
});
