/**
 * The learning of `builtin:text-classifier`, pure and in memory: parsing its
 * lines, the hyperparameters, and mini-batch SGD on linear-text-model.ts's
 * logistic regression. The program (text-classifier.ts) adds the runner
 * contract's files and environment around it; the quality test and the
 * bench call `trainRank` directly, so what they measure is what a rank runs.
 *
 * Deterministic: given the same model, examples (in order), params, rank and
 * round, the trained weights are the same bit for bit.
 *
 * Learning rate: `learning_rate / (1 + lr_decay × e)` for the e-th pass
 * over the data counted from the job's start (e = (round − 1) × epochs +
 * epoch − 1), so a job of R rounds of E epochs follows the same schedule
 * whether its ranks average after every round or one rank runs them all.
 */
import { z } from 'zod';
import { featurize, hashString, softmax, type LinearTextModel } from './linear-text-model.ts';

export const paramsSchema = z.strictObject({
  learning_rate: z.number().positive().default(4),
  lr_decay: z.number().min(0).default(0.3),
  epochs: z.number().int().min(0).max(1000).default(8),
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
export type Params = z.infer<typeof paramsSchema>;

export interface Example {
  text: string;
  label: string;
}

// ---- data ----

export interface Parsed {
  examples: Example[];
  blank: number;
  malformed: number;
}

/** One line as an example, or undefined when it is not one. */
export function parseLine(line: string): Example | undefined {
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

/** Adds the examples of `content` (lines ended by \n, \r\n or a lone \r) to `into`, counting what is skipped. */
export function parseContent(content: string, into: Parsed): void {
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

/** Whether a line is held out for evaluation: by its hash, so the same line always is, on any rank. */
export const heldOut = (e: Example, fraction: number): boolean =>
  hashString(`${e.text}\t${e.label}`) / 2 ** 32 < fraction;

// ---- features ----

/** Featurized examples in compressed rows: example i's features are [offsets[i], offsets[i + 1]). */
interface Dataset {
  size: number;
  offsets: Uint32Array;
  indices: Uint32Array;
  values: Float32Array;
  labels: Int32Array;
}

function toDataset(examples: readonly Example[], model: LinearTextModel): Dataset {
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

  /** One pass over `order` in mini-batches at `rate`; the mean cross-entropy before each batch's step. */
  epoch(data: Dataset, order: Uint32Array, p: Params, rate: number): number {
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
      this.step(data, batch, grad, rate, p.l2);
    }
    return loss / order.length;
  }

  private step(data: Dataset, batch: Uint32Array, grad: Float64Array, learningRate: number, l2: number): void {
    const { w, c: classes } = this;
    const rate = learningRate / batch.length;
    this.scale *= 1 - learningRate * l2;
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

export interface MetricLine {
  metric: string;
  value: number;
  step?: number;
}

/** The learning rate of the e-th pass over the data since the job's start (0-based). */
export const rateAt = (p: Pick<Params, 'learning_rate' | 'lr_decay'>, pass: number): number =>
  p.learning_rate / (1 + p.lr_decay * pass);

/**
 * One rank's round: `params.epochs` passes of SGD over `train` from `model`
 * (whose classes every label must be among), scored on `evaluation`.
 * Metrics go to `onMetric` as they come: `loss` per epoch, then
 * `train_accuracy`, `eval_loss` and `eval_accuracy` (when there is an
 * evaluation set) and `examples`.
 */
export function trainRank(opts: {
  model: LinearTextModel;
  train: readonly Example[];
  evaluation: readonly Example[];
  params: Params;
  rank: number;
  round: number;
  onMetric?: (line: MetricLine) => void;
}): LinearTextModel {
  const { model, params, rank, round } = opts;
  const emit = opts.onMetric ?? (() => undefined);
  const trainSet = toDataset(opts.train, model);
  const sgd = new Sgd(model);
  const next = random(hashString(`${params.seed}:${rank}:${round}`));
  const order = Uint32Array.from({ length: trainSet.size }, (_, i) => i);
  for (let epoch = 1; epoch <= params.epochs; epoch++) {
    shuffle(order, next);
    const rate = rateAt(params, (round - 1) * params.epochs + epoch - 1);
    emit({ metric: 'loss', value: sgd.epoch(trainSet, order, params, rate), step: epoch });
  }
  emit({ metric: 'train_accuracy', value: sgd.evaluate(trainSet).accuracy });
  if (opts.evaluation.length > 0) {
    const scored = sgd.evaluate(toDataset(opts.evaluation, model));
    emit({ metric: 'eval_loss', value: scored.loss });
    emit({ metric: 'eval_accuracy', value: scored.accuracy });
  }
  emit({ metric: 'examples', value: opts.train.length });
  return sgd.result(opts.train.length);
}
