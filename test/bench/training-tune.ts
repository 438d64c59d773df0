/**
 * `npm run bench:training -- tune` (or `tsx test/bench/training-tune.ts [grid.json]`): how the
 * built-in trainer's defaults were chosen. Every combination of the grid's
 * hyperparameters is trained in `rounds` mode (simulated, test/helpers/training-quality.ts)
 * with 1 and 3 workers for TUNE_ROUNDS (5) rounds, 5-fold cross-validated on
 * the training data of seed TUNE_SEED (1) (the test split is never looked
 * at): each fold's model trains on the other four; the accuracies are the
 * folds' mean. Rows are sorted by the worse of the two.
 *
 * grid.json: `{ "learning_rate": [0.5, 1], "epochs": [2, 4], ... }`; a
 * parameter left out keeps its default.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { table } from './stats.ts';
import type { Example } from '../../gpu-worker/training/builtin/train-linear.ts';
import {
  accuracy,
  examplesOf,
  folds,
  simulateRounds,
  splitSentences,
  writeObjects,
} from '../helpers/training-quality.ts';

const SEED = Number(process.env.TUNE_SEED ?? '1');
const ROUNDS = Number(process.env.TUNE_ROUNDS ?? '5');

/** Every combination of the grid's values, as params objects. */
function combinations(grid: Record<string, unknown[]>): Record<string, unknown>[] {
  let out: Record<string, unknown>[] = [{}];
  for (const [name, values] of Object.entries(grid)) out = out.flatMap((p) => values.map((v) => ({ ...p, [name]: v })));
  return out;
}

async function main(): Promise<void> {
  const gridFile = process.argv.slice(2).find((a) => a.endsWith('.json'));
  const grid = gridFile
    ? (JSON.parse(await readFile(gridFile, 'utf8')) as Record<string, unknown[]>)
    : { learning_rate: [0.25, 0.5, 1, 2], lr_decay: [0, 0.3, 1], epochs: [1, 2, 4] };
  const dirs: string[] = [];
  const validations: Example[][] = [];
  try {
    for (let fold = 0; fold < folds; fold++) {
      const split = await splitSentences(SEED, fold);
      const dir = await mkdtemp(join(tmpdir(), 'interfleet-tune-'));
      dirs.push(dir);
      await writeObjects(dir, split.train);
      validations.push(examplesOf(split.validation));
    }
    console.log(
      `tune: seed ${SEED}, ${ROUNDS} rounds, ${folds}-fold cross-validation over ${validations.flat().length} lines; grid ${JSON.stringify(grid)}`,
    );
    const rows: { params: Record<string, unknown>; one: number; three: number }[] = [];
    for (const params of combinations(grid)) {
      const score = async (workers: number) => {
        let sum = 0;
        for (const [fold, dir] of dirs.entries())
          sum += accuracy(await simulateRounds({ dataDir: dir, workers, rounds: ROUNDS, params }), validations[fold]!);
        return sum / dirs.length;
      };
      rows.push({ params, one: await score(1), three: await score(3) });
      console.error(`${JSON.stringify(params)} ${rows.at(-1)!.one.toFixed(4)} ${rows.at(-1)!.three.toFixed(4)}`);
    }
    rows.sort((a, b) => Math.min(b.one, b.three) - Math.min(a.one, a.three) || b.one + b.three - a.one - a.three);
    const pct = (x: number) => (x * 100).toFixed(1);
    console.log(
      table(
        ['params', '1 worker', '3 workers', 'gap'],
        rows.map((r) => [JSON.stringify(r.params), pct(r.one), pct(r.three), pct(r.one - r.three)]),
      ),
    );
  } finally {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}

await main();
