/**
 * Issue 13's quality proof, deterministic and in one process: `rounds` mode
 * with 3 workers reaches, on a held-out test split, the accuracy of 1 worker
 * trained on all the data for the same number of passes (within 1 point),
 * and both beat the majority class and the lexicon classifier as served.
 * The rounds run the code a rank and a reduce run (test/helpers/training-quality.ts:
 * pullShard from file:// storage, trainRank, averageModelDirs); `npm run
 * bench:training` runs the same jobs on a real fleet and checks that it ends
 * with the same weights bit for bit.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newModel } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { paramsSchema, trainRank } from '../../gpu-worker/training/builtin/train-linear.ts';
import {
  accuracy,
  examplesOf,
  lexiconAccuracy,
  majorityAccuracy,
  simulateRounds,
  splitSentences,
  writeObjects,
  type Split,
} from '../helpers/training-quality.ts';

const SEED = 1;
const ROUNDS = 5;
let dir: string;
let split: Split;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-quality-'));
  split = await splitSentences(SEED);
  await writeObjects(dir, split.train);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the built-in text classifier in rounds mode', () => {
  it('trains the same weights from the same inputs', () => {
    const params = paramsSchema.parse({ seed: SEED, epochs: 2 });
    const train = examplesOf(split.train).slice(0, 300);
    const run = () =>
      trainRank({
        model: newModel({ features: 1 << 12, ngrams: 2, classes: ['0', '1'] }),
        train,
        evaluation: [],
        params,
        rank: 0,
        round: 1,
      });
    const [a, b] = [run(), run()];
    expect(Buffer.from(a.weights.buffer).equals(Buffer.from(b.weights.buffer))).toBe(true);
    expect(a.weights.some((w) => w !== 0)).toBe(true);
  });

  it('with 3 workers is within 1 point of 1 worker on the test split, and beats the baselines', async () => {
    const train = examplesOf(split.train);
    const test = examplesOf(split.test);
    const score = async (workers: number) =>
      accuracy(await simulateRounds({ dataDir: dir, workers, rounds: ROUNDS, params: { seed: SEED } }), test);
    const one = await score(1);
    const three = await score(3);
    const majority = majorityAccuracy(train, test);
    const lexicon = lexiconAccuracy(train, test);
    console.log(
      `seed ${SEED}, ${test.length} test sentences, ${ROUNDS} rounds: 1 worker ${one.toFixed(4)}, 3 workers ${three.toFixed(4)}, ` +
        `majority ${majority.toFixed(4)}, lexicon as served ${lexicon.asServed.toFixed(4)} ` +
        `(neutral → majority ${lexicon.neutralAsMajority.toFixed(4)})`,
    );
    expect(Math.abs(one - three)).toBeLessThanOrEqual(0.01);
    for (const acc of [one, three]) {
      expect(acc).toBeGreaterThan(majority + 0.25);
      expect(acc).toBeGreaterThan(lexicon.asServed + 0.05);
    }
  }, 60_000);
});
