/**
 * `builtin:text-classifier`: a training program run as its own process under
 * the runner contract (gpu-worker/training/run-command.ts), so that a job can
 * train a real model with nothing installed. Logistic regression over hashed
 * word n-grams (linear-text-model.ts), mini-batch SGD on this rank's shard,
 * from the round's model when there is one.
 *
 * Environment:
 *   INTERFLEET_DATA_DIR    the shard: every file under it, each line TSV `text<TAB>label` (the last tab
 *                          splits) or, when it starts with `{`, JSON `{"text": ..., "label": ...}`; \n, \r\n
 *                          and lone \r end lines; blank and malformed lines are skipped and counted (stderr)
 *   INTERFLEET_INIT_DIR    start from the model there when it holds a model.json (its features, ngrams and
 *                          classes win over the params), else from zero weights
 *   INTERFLEET_OUTPUT_DIR  the trained model is written there (linear-text-model.ts's directory format)
 *   INTERFLEET_PARAMS      hyperparameters as JSON (or INTERFLEET_HYPERPARAMS); see `paramsSchema`
 *   RANK, WORLD_SIZE, INTERFLEET_ROUND   integers, for the log, the shuffling seed and (the round) the
 *                          learning rate's schedule (train-linear.ts)
 *
 * stdout: one JSON metric per line: `loss` per epoch (mean training cross-entropy, `step` = epoch),
 * then `train_accuracy`, `eval_loss` and `eval_accuracy` (on the held-out lines; absent when none are),
 * `examples` (training lines) and `train_seconds` (featurizing and SGD, without the process's start and
 * file I/O). Exit 0; 2 on a bad environment or params; 3 when there is no training example; 1 on anything
 * else; the reason on stderr.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { newModel, readModelDir, writeModelDir, type LinearTextModel } from './linear-text-model.ts';
import {
  heldOut,
  paramsSchema,
  parseContent,
  trainRank,
  type MetricLine,
  type Params,
  type Parsed,
} from './train-linear.ts';

/** A failure with the exit code the contract gives it. */
class ExitError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

interface Env {
  dataDir: string;
  initDir: string | undefined;
  outputDir: string;
  params: Params;
  rank: number;
  worldSize: number;
  round: number;
}

// ---- environment ----

function intVar(env: NodeJS.ProcessEnv, names: string[], fallback: number): number {
  for (const name of names) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new ExitError(`${name} must be a non-negative integer, got "${text}"`, 2);
    return n;
  }
  return fallback;
}

function parseParams(env: NodeJS.ProcessEnv): Params {
  const name = env.INTERFLEET_PARAMS ? 'INTERFLEET_PARAMS' : 'INTERFLEET_HYPERPARAMS';
  const text = env[name]?.trim() || '{}';
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ExitError(`${name} is not JSON: ${(err as Error).message}`, 2);
  }
  const parsed = paramsSchema.safeParse(json ?? {});
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(params)'}: ${i.message}`);
  throw new ExitError(`bad hyperparameters in ${name}: ${issues.join('; ')}`, 2);
}

function readEnv(env: NodeJS.ProcessEnv): Env {
  const dir = (name: string): string => {
    const value = env[name];
    if (!value) throw new ExitError(`${name} is not set`, 2);
    return value;
  };
  return {
    dataDir: dir('INTERFLEET_DATA_DIR'),
    initDir: env.INTERFLEET_INIT_DIR || undefined,
    outputDir: dir('INTERFLEET_OUTPUT_DIR'),
    params: parseParams(env),
    rank: intVar(env, ['RANK', 'INTERFLEET_RANK'], 0),
    worldSize: intVar(env, ['WORLD_SIZE', 'INTERFLEET_WORLD_SIZE'], 1),
    round: intVar(env, ['INTERFLEET_ROUND'], 1),
  };
}

// ---- data ----

/** Every regular file under `dir`, in path order (so that a shard always reads the same). */
async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await filesUnder(path)));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}

async function readShard(dir: string): Promise<Parsed> {
  const parsed: Parsed = { examples: [], blank: 0, malformed: 0 };
  const exists = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists) return parsed;
  for (const file of await filesUnder(dir)) parseContent(await readFile(file, 'utf8'), parsed);
  return parsed;
}

// ---- the model to start from ----

async function initialModel(env: Env, labelsSeen: string[]): Promise<{ model: LinearTextModel; from: string }> {
  const { initDir, params } = env;
  const hasInit =
    initDir !== undefined &&
    (await stat(join(initDir, 'model.json')).then(
      () => true,
      () => false,
    ));
  if (hasInit) {
    const model = await readModelDir(initDir);
    if (params.labels && params.labels.join('\n') !== model.classes.join('\n'))
      throw new ExitError(
        `params.labels ${JSON.stringify(params.labels)} differ from the init model's classes ${JSON.stringify(model.classes)}`,
        2,
      );
    return { model, from: initDir };
  }
  const classes = params.labels ?? [...new Set(labelsSeen)].sort();
  if (classes.length < 2)
    throw new ExitError(
      `only one label (${JSON.stringify(classes[0])}) in the data: name every class in params.labels`,
      2,
    );
  return { model: newModel({ features: params.features, ngrams: params.ngrams, classes }), from: 'zero weights' };
}

// ---- the program ----

const metric = (line: MetricLine): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const note = (text: string): void => {
  process.stderr.write(`text-classifier: ${text}\n`);
};

async function main(): Promise<void> {
  const env = readEnv(process.env);
  const { params } = env;
  const shard = await readShard(env.dataDir);
  if (shard.malformed + shard.blank > 0)
    note(`warning: skipped ${shard.malformed} malformed and ${shard.blank} blank line(s) in ${env.dataDir}`);
  if (shard.examples.length === 0)
    throw new ExitError(`no training examples in INTERFLEET_DATA_DIR (${env.dataDir})`, 3);

  const { model, from } = await initialModel(
    env,
    shard.examples.map((e) => e.label),
  );
  const known = new Set(model.classes);
  const usable = shard.examples.filter((e) => known.has(e.label));
  if (usable.length < shard.examples.length)
    note(
      `warning: skipped ${shard.examples.length - usable.length} line(s) with a label not among ${JSON.stringify(model.classes)}`,
    );
  const train = usable.filter((e) => !heldOut(e, params.holdout));
  const evaluation = usable.filter((e) => heldOut(e, params.holdout));
  if (train.length === 0)
    throw new ExitError(
      `no training examples in INTERFLEET_DATA_DIR (${env.dataDir}): ${usable.length} usable line(s), all held out`,
      3,
    );
  note(
    `rank ${env.rank}/${env.worldSize} round ${env.round}: ${train.length} training and ${evaluation.length} held-out ` +
      `lines, classes ${JSON.stringify(model.classes)}, ${model.features} features, ${model.ngrams}-grams, from ${from}`,
  );

  const started = performance.now();
  const trained = trainRank({ model, train, evaluation, params, rank: env.rank, round: env.round, onMetric: metric });
  // Featurizing and SGD, without the process's start and its file I/O: the compute the bench sets beside the rest.
  const seconds = (performance.now() - started) / 1000;
  metric({ metric: 'train_seconds', value: seconds });
  note(`featurized and trained ${params.epochs} epoch(s) in ${Math.round(seconds * 1000)} ms`);
  await writeModelDir(env.outputDir, trained);
}

main().catch((err: unknown) => {
  process.stderr.write(`text-classifier: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof ExitError ? err.code : 1;
});
