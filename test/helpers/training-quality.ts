/**
 * The quality side of `npm run bench:training` and of the quality test: the
 * UCI sentiment sentences split three ways, `rounds` mode simulated in one
 * process with the very code a rank and a reduce run, and the scores a
 * trained model is set beside.
 *
 * - Splits: each line of each source file (amazon, imdb, yelp) goes to
 *   `test` when h(`test:<seed>`) < 0.2, where h(salt) = FNV-1a(`<salt>:<line>`)
 *   / 2^32 (about 20 % of the lines); the others are the training data. For
 *   tuning (training-tune.ts), the training data are cut again into 5 folds by
 *   h(`validation:<seed>`): fold f validates a model trained on the other four,
 *   and the test split is never looked at.
 * - Simulated rounds (`simulateRounds`): each round, rank k's shard is what
 *   the lane pulls for it (rank-files.ts's pullShard, `lines`, from file://
 *   storage), its lines are read and held out as the program does, it trains
 *   with train-linear.ts's `trainRank` from the round's model, and the ranks'
 *   models are averaged by average-tensors.ts's `averageModelDirs`, through
 *   model directories as in the fleet. Deterministic: a fleet job with the
 *   same data, params and workers ends with the same weights.
 * - Baselines: the majority class of the training split, and the embedded
 *   lexicon classifier (gpu-worker/backends/embedded-sentiment.ts), scored
 *   two ways: as served (its `neutral`, no known opinion word, is wrong on
 *   this two-class data) and kindly (`neutral` taken as the training
 *   majority class).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createFileStorage } from '../../common/storage/index.ts';
import { createNlp } from '../../gpu-worker/backends/embedded-nlp.ts';
import { sentimentLabel } from '../../gpu-worker/backends/embedded-sentiment.ts';
import { averageModelDirs } from '../../gpu-worker/training/builtin/average-tensors.ts';
import {
  hashString,
  newModel,
  predict,
  readModelDir,
  writeModelDir,
  type LinearTextModel,
} from '../../gpu-worker/training/builtin/linear-text-model.ts';
import {
  heldOut,
  paramsSchema,
  parseContent,
  parseLine,
  trainRank,
  type Example,
  type Parsed,
} from '../../gpu-worker/training/builtin/train-linear.ts';
import { pullShard } from '../../gpu-worker/training/rank-files.ts';

export const sentencesDir = join(import.meta.dirname, '../../../shared/data/sentiment-labelled-sentences');
const sources = ['amazon_cells_labelled.txt', 'imdb_labelled.txt', 'yelp_labelled.txt'];

export interface Split {
  /** Per source file, its lines (`text<TAB>label`) in file order. */
  train: Map<string, string[]>;
  /** Empty unless a fold was asked for. */
  validation: Map<string, string[]>;
  test: Map<string, string[]>;
}

export const folds = 5;
const share = (salt: string, line: string): number => hashString(`${salt}:${line}`) / 2 ** 32;

/**
 * The sentences split by a salted hash of each line (see the header): `test`, and the rest as `train`;
 * with `fold` (0..4), that fold of the rest is `validation` and `train` the other four.
 */
export async function splitSentences(seed: number, fold?: number, dir = sentencesDir): Promise<Split> {
  const split: Split = { train: new Map(), validation: new Map(), test: new Map() };
  for (const source of sources) {
    const lines = (await readFile(join(dir, source), 'utf8')).split(/\r\n|\n|\r/).filter((l) => parseLine(l));
    for (const part of Object.values(split)) part.set(source, []);
    for (const line of lines) {
      const part =
        share(`test:${seed}`, line) < 0.2
          ? 'test'
          : fold !== undefined && Math.floor(share(`validation:${seed}`, line) * folds) === fold
            ? 'validation'
            : 'train';
      split[part].get(source)!.push(line);
    }
  }
  return split;
}

export const examplesOf = (part: Map<string, string[]>): Example[] =>
  [...part.values()].flat().map((l) => parseLine(l)!);

/** One object per source file under `dir`, each line `repeat` times over (the bench's larger set). */
export async function writeObjects(dir: string, part: Map<string, string[]>, repeat = 1): Promise<number> {
  await mkdir(dir, { recursive: true });
  let lines = 0;
  for (const [source, rows] of part) {
    const body = `${rows.join('\n')}\n`;
    await writeFile(join(dir, source), body.repeat(repeat));
    lines += rows.length * repeat;
  }
  return lines;
}

/** The examples of rank `rank`'s shard, read as the program reads them (files in name order). */
async function rankExamples(dataUri: string, rank: number, workers: number, work: string): Promise<Example[]> {
  const dir = join(work, `shard-${workers}-${rank}`);
  await mkdir(dir, { recursive: true });
  await pullShard(createFileStorage(), { uris: [dataUri], shard: 'lines' }, rank, workers, dir);
  const parsed: Parsed = { examples: [], blank: 0, malformed: 0 };
  for (const file of (await readdir(dir)).sort()) parseContent(await readFile(join(dir, file), 'utf8'), parsed);
  return parsed.examples;
}

/**
 * `rounds` mode in one process: `workers` ranks on the `lines` shards of the objects under `dataDir`,
 * `rounds` rounds, each averaged; the final model. `params` as a job's (defaults filled in).
 */
export async function simulateRounds(opts: {
  dataDir: string;
  workers: number;
  rounds: number;
  params?: Record<string, unknown>;
}): Promise<LinearTextModel> {
  const params = paramsSchema.parse(opts.params ?? {});
  const work = await mkdtemp(join(tmpdir(), 'interfleet-train-sim-'));
  try {
    const dataUri = `${pathToFileURL(opts.dataDir).href}/`;
    const shards: Example[][] = [];
    for (let rank = 0; rank < opts.workers; rank++) shards.push(await rankExamples(dataUri, rank, opts.workers, work));
    const classes = params.labels ?? [...new Set(shards.flat().map((e) => e.label))].sort();
    let model = newModel({ features: params.features, ngrams: params.ngrams, classes });
    for (let round = 1; round <= opts.rounds; round++) {
      const outputs: string[] = [];
      for (const [rank, examples] of shards.entries()) {
        const train = examples.filter((e) => !heldOut(e, params.holdout));
        const evaluation = examples.filter((e) => heldOut(e, params.holdout));
        const out = join(work, `r${round}-k${rank}`);
        await writeModelDir(out, trainRank({ model, train, evaluation, params, rank, round }));
        outputs.push(out);
      }
      const reduced = join(work, `r${round}-model`);
      await averageModelDirs(outputs, reduced);
      model = await readModelDir(reduced);
    }
    return model;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export const accuracy = (model: LinearTextModel, examples: readonly Example[]): number =>
  examples.filter((e) => predict(model, e.text).label === e.label).length / examples.length;

/** The training split's most frequent label. */
export function majorityLabel(train: readonly Example[]): string {
  const counts = new Map<string, number>();
  for (const e of train) counts.set(e.label, (counts.get(e.label) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0];
}

export const majorityAccuracy = (train: readonly Example[], examples: readonly Example[]): number => {
  const label = majorityLabel(train);
  return examples.filter((e) => e.label === label).length / examples.length;
};

/** The lexicon classifier's accuracy (positive → "1", negative → "0"): as served, and with neutral → the training majority. */
export function lexiconAccuracy(
  train: readonly Example[],
  examples: readonly Example[],
): { asServed: number; neutralAsMajority: number } {
  const nlp = createNlp();
  const majority = majorityLabel(train);
  let asServed = 0;
  let neutralAsMajority = 0;
  for (const e of examples) {
    const l = sentimentLabel(nlp.sentiment(e.text));
    const label = l === 'positive' ? '1' : l === 'negative' ? '0' : undefined;
    if (label === e.label) asServed++;
    if ((label ?? majority) === e.label) neutralAsMajority++;
  }
  return { asServed: asServed / examples.length, neutralAsMajority: neutralAsMajority / examples.length };
}
