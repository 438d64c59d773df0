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
 *   RANK, WORLD_SIZE, INTERFLEET_ROUND   integers, for the log and the shuffling seed
 *
 * stdout: one JSON metric per line: `loss` per epoch (mean training cross-entropy, `step` = epoch),
 * then `train_accuracy`, `eval_loss` and `eval_accuracy` (on the held-out lines; absent when none are)
 * and `examples` (training lines). Exit 0; 2 on a bad environment or params; 3 when there is no
 * training example; 1 on anything else; the reason on stderr.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  featurize,
  hashString,
  newModel,
  readModelDir,
  softmax,
  writeModelDir,
  type LinearTextModel,
} from './linear-text-model.ts';

const paramsSchema = z.strictObject({
  learning_rate: z.number().positive().default(0.5),
  epochs: z.number().int().min(0).max(1000).default(5),
  l2: z.number().min(0).max(1).default(1e-4),
  features: z
    .number()
    .int()
    .min(2)
    .max(2 ** 24)
    .default(2 ** 18),
  ngrams: z.number().int().min(1).max(5).default(2),
  seed: z.number().int().default(0),
  batch_size: z.number().int().min(1).default(32),
  holdout: z.number().min(0).max(0.5).default(0.1),
  labels: z
    .array(z.string().min(1))
    .min(2)
    .refine((l) => new Set(l).size === l.length, { message: 'labels must be distinct' })
    .optional(),
});
type Params = z.infer<typeof paramsSchema>;

/** A failure with the exit code the contract gives it. */
class ExitError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

interface Example {
  text: string;
  label: string;
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

interface Parsed {
  examples: Example[];
  blank: number;
  malformed: number;
}

/** One line as an example, or undefined when it is not one. */
function parseLine(line: string): Example | undefined {
  if (line.trimStart().startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return undefined;
    }
    const { text, label } = (json ?? {}) as { text?: unknown; label?: unknown };
    const labelText = typeof label === 'number' && Number.isFinite(label) ? String(label) : label;
    if (typeof text !== 'string' || typeof labelText !== 'string') return undefined;
    return text.trim() && labelText.trim() ? { text: text.trim(), label: labelText.trim() } : undefined;
  }
  const tab = line.lastIndexOf('\t');
  if (tab < 0) return undefined;
  const text = line.slice(0, tab).trim();
  const label = line.slice(tab + 1).trim();
  return text && label ? { text, label } : undefined;
}

function parseContent(content: string, into: Parsed): void {
  const lines = content.split(/\r\n|\n|\r/);
  if (lines.at(-1) === '') lines.pop();
  for (const line of lines) {
    if (line.trim() === '') {
      into.blank++;
      continue;
    }
    const example = parseLine(line);
    if (example) into.examples.push(example);
    else into.malformed++;
  }
}

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

// ---- features ----

/** Featurized examples in compressed rows: example i's features are [offsets[i], offsets[i + 1]). */
interface Dataset {
  size: number;
  offsets: Uint32Array;
  indices: Uint32Array;
  values: Float32Array;
  labels: Int32Array;
}

function toDataset(examples: Example[], model: LinearTextModel): Dataset {
  const classOf = new Map(model.classes.map((c, i) => [c, i]));
  const rows = examples.map((e) => featurize(e.text, model.features, model.ngrams));
  const offsets = new Uint32Array(rows.length + 1);
  rows.forEach((r, i) => (offsets[i + 1] = offsets[i]! + r.indices.length));
  const indices = new Uint32Array(offsets[rows.length]!);
  const values = new Float32Array(indices.length);
  rows.forEach((r, i) => {
    indices.set(r.indices, offsets[i]);
    values.set(r.values, offsets[i]);
  });
  const labels = Int32Array.from(examples, (e) => classOf.get(e.label)!);
  return { size: examples.length, offsets, indices, values, labels };
}

/** Whether a line is held out for evaluation: by its hash, so the same line always is, on any rank. */
const heldOut = (e: Example, fraction: number): boolean => hashString(`${e.text}\t${e.label}`) / 2 ** 32 < fraction;

// ---- training ----

/** mulberry32: a small deterministic PRNG in [0, 1). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function shuffle(order: Uint32Array, next: () => number): void {
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
}

/**
 * The weights being trained, feature-major (w[j * C + c]) so that an
 * example's few features touch contiguous memory, and scaled: the true
 * weights are `scale` × w, so L2 decay is one multiplication per step
 * instead of a pass over every weight.
 */
class Sgd {
  private readonly w: Float64Array;
  private readonly bias: Float64Array;
  private scale = 1;
  private readonly c: number;
  private readonly logits: Float64Array;

  constructor(private readonly model: LinearTextModel) {
    const { features } = model;
    this.c = model.classes.length;
    this.w = new Float64Array(features * this.c);
    for (let c = 0; c < this.c; c++)
      for (let j = 0; j < features; j++) this.w[j * this.c + c] = model.weights[c * features + j]!;
    this.bias = Float64Array.from(model.bias);
    this.logits = new Float64Array(this.c);
  }

  /** Class probabilities of example i (in a buffer reused by the next call). */
  probabilities(data: Dataset, i: number): Float64Array {
    const { w, c: classes, logits } = this;
    logits.fill(0);
    for (let k = data.offsets[i]!; k < data.offsets[i + 1]!; k++) {
      const base = data.indices[k]! * classes;
      const v = data.values[k]!;
      for (let c = 0; c < classes; c++) logits[c]! += w[base + c]! * v;
    }
    for (let c = 0; c < classes; c++) logits[c] = logits[c]! * this.scale + this.bias[c]!;
    return softmax(logits);
  }

  /** One pass over `order` in mini-batches; the mean cross-entropy before each batch's step. */
  epoch(data: Dataset, order: Uint32Array, p: Params): number {
    const classes = this.c;
    const grad = new Float64Array(p.batch_size * classes);
    let loss = 0;
    for (let start = 0; start < order.length; start += p.batch_size) {
      const batch = order.subarray(start, start + p.batch_size);
      batch.forEach((i, b) => {
        const probs = this.probabilities(data, i);
        const y = data.labels[i]!;
        loss -= Math.log(Math.max(probs[y]!, 1e-15));
        for (let c = 0; c < classes; c++) grad[b * classes + c] = probs[c]! - (c === y ? 1 : 0);
      });
      this.step(data, batch, grad, p);
    }
    return loss / order.length;
  }

  private step(data: Dataset, batch: Uint32Array, grad: Float64Array, p: Params): void {
    const { w, c: classes } = this;
    const rate = p.learning_rate / batch.length;
    this.scale *= 1 - p.learning_rate * p.l2;
    if (this.scale < 1e-6) this.rescale();
    const perScale = rate / this.scale;
    batch.forEach((i, b) => {
      for (let k = data.offsets[i]!; k < data.offsets[i + 1]!; k++) {
        const base = data.indices[k]! * classes;
        const v = data.values[k]! * perScale;
        for (let c = 0; c < classes; c++) w[base + c]! -= grad[b * classes + c]! * v;
      }
      for (let c = 0; c < classes; c++) this.bias[c]! -= grad[b * classes + c]! * rate;
    });
  }

  private rescale(): void {
    for (let k = 0; k < this.w.length; k++) this.w[k]! *= this.scale;
    this.scale = 1;
  }

  evaluate(data: Dataset): { loss: number; accuracy: number } {
    let loss = 0;
    let correct = 0;
    for (let i = 0; i < data.size; i++) {
      const probs = this.probabilities(data, i);
      const y = data.labels[i]!;
      loss -= Math.log(Math.max(probs[y]!, 1e-15));
      let best = 0;
      for (let c = 1; c < probs.length; c++) if (probs[c]! > probs[best]!) best = c;
      if (best === y) correct++;
    }
    return { loss: loss / data.size, accuracy: correct / data.size };
  }

  /** The trained model, back in the directory's layout ([classes, features], float32). */
  result(examples: number): LinearTextModel {
    const { features } = this.model;
    const weights = new Float32Array(this.c * features);
    for (let c = 0; c < this.c; c++)
      for (let j = 0; j < features; j++) weights[c * features + j] = this.w[j * this.c + c]! * this.scale;
    return { ...this.model, weights, bias: Float32Array.from(this.bias), examples };
  }
}

// ---- the program ----

const metric = (line: { metric: string; value: number; step?: number }): void => {
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
  const trainSet = toDataset(train, model);
  const sgd = new Sgd(model);
  const next = random(hashString(`${params.seed}:${env.rank}:${env.round}`));
  const order = Uint32Array.from({ length: trainSet.size }, (_, i) => i);
  for (let epoch = 1; epoch <= params.epochs; epoch++) {
    shuffle(order, next);
    metric({ metric: 'loss', value: sgd.epoch(trainSet, order, params), step: epoch });
  }
  metric({ metric: 'train_accuracy', value: sgd.evaluate(trainSet).accuracy });
  if (evaluation.length > 0) {
    const scored = sgd.evaluate(toDataset(evaluation, model));
    metric({ metric: 'eval_loss', value: scored.loss });
    metric({ metric: 'eval_accuracy', value: scored.accuracy });
  }
  metric({ metric: 'examples', value: train.length });
  note(`featurized and trained ${params.epochs} epoch(s) in ${Math.round(performance.now() - started)} ms`);
  await writeModelDir(env.outputDir, sgd.result(train.length));
}

main().catch((err: unknown) => {
  process.stderr.write(`text-classifier: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof ExitError ? err.code : 1;
});
