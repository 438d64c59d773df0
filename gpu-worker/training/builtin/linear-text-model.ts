/**
 * The built-in text classifier's model: multinomial logistic regression over
 * hashed word n-grams, small enough to train on a CPU in a second and plain
 * enough that the generic reduce (average-tensors.ts) averages it like any
 * other checkpoint. Everything here is pure except readModelDir and
 * writeModelDir.
 *
 * Features: the text lower-cased, tokens /[\p{L}\p{N}']+/u, every n-gram of
 * 1..`ngrams` tokens joined by one space, hashed with FNV-1a 32-bit over its
 * UTF-8 bytes, modulo `features`; a feature's value is its count, the
 * vector scaled down to an L2 norm of 8 when it is longer (a sentence's is
 * about 3 to 9: counts, but a long text cannot swamp an SGD step).
 *
 * The model directory (a contract: the trainer writes it, the reduce averages
 * it, whoever serves the model reads it):
 *
 *   model.json   {
 *                  "format": "interfleet-linear-text-v1",
 *                  "features": F, "ngrams": N,
 *                  "classes": ["0", "1", ...],            (labels, C >= 2, distinct)
 *                  "tensors": [
 *                    { "name": "weights", "file": "weights.f32", "shape": [C, F] },
 *                    { "name": "bias", "file": "bias.f32", "shape": [C] }
 *                  ],
 *                  "examples": E                          (optional: training examples behind these weights)
 *                }
 *   <file>       each tensor as raw little-endian float32, row-major,
 *                exactly product(shape) × 4 bytes.
 *
 * `examples`: a rank's output, the lines it trained on in its round; a
 * reduce's, the sum over its inputs (and the reduce's default weights).
 *
 * P(class c | text) = softmax_c(weights[c] · x + bias[c]).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { decodeF32, encodeF32, tensorFileName } from './average-tensors.ts';

export const modelFormat = 'interfleet-linear-text-v1';
export const modelFile = 'model.json';

export interface LinearTextModel {
  features: number;
  ngrams: number;
  classes: string[];
  /** [classes, features], row-major: weights[c * features + j]. */
  weights: Float32Array;
  bias: Float32Array;
  /** Training examples behind these weights, when known. */
  examples?: number;
}

export interface SparseVector {
  indices: Uint32Array;
  values: Float32Array;
}

export interface Prediction {
  label: string;
  /** Probability of `label`. */
  score: number;
  probabilities: Record<string, number>;
}

const maxFeatures = 1 << 24;
const maxNgrams = 5;
/** Longest feature vector (L2 norm): a long text is scaled down to it, so that no one text swamps an SGD step. */
export const maxNorm = 8;

const tensorEntry = z.object({
  name: z.string().min(1),
  file: tensorFileName,
  shape: z.array(z.number().int().nonnegative()),
});

const modelJsonSchema = z.looseObject({
  format: z.literal(modelFormat),
  features: z.number().int().min(1).max(maxFeatures),
  ngrams: z.number().int().min(1).max(maxNgrams),
  classes: z
    .array(z.string())
    .min(2)
    .refine((c) => new Set(c).size === c.length, { message: 'labels must be distinct' }),
  tensors: z.array(tensorEntry),
  examples: z.number().nonnegative().optional(),
});
type ModelJson = z.infer<typeof modelJsonSchema>;

// ---- features ----

const utf8 = new TextEncoder();
const tokenPattern = /[\p{L}\p{N}']+/gu;
const fnvOffset = 0x811c9dc5;
const fnvPrime = 0x01000193;
const space = 0x20;

/** FNV-1a 32-bit, continued from `hash` over `bytes`. */
function fnv1a(bytes: Uint8Array, hash = fnvOffset): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, fnvPrime);
  return h >>> 0;
}

/** FNV-1a 32-bit of a string's UTF-8 bytes (also the trainer's hold-out hash). */
export const hashString = (text: string): number => fnv1a(utf8.encode(text));

export const tokenize = (text: string): string[] => text.toLowerCase().match(tokenPattern) ?? [];

/** The hashed n-gram counts of `text`, L2-normalised, indices ascending. */
export function featurize(text: string, features: number, ngrams: number): SparseVector {
  const tokens = tokenize(text).map((t) => utf8.encode(t));
  const counts = new Map<number, number>();
  for (let i = 0; i < tokens.length; i++) {
    let h = fnvOffset;
    for (let n = 0; n < ngrams && i + n < tokens.length; n++) {
      if (n > 0) h = Math.imul(h ^ space, fnvPrime);
      h = fnv1a(tokens[i + n]!, h);
      const j = h % features;
      counts.set(j, (counts.get(j) ?? 0) + 1);
    }
  }
  const indices = Uint32Array.from([...counts.keys()].sort((a, b) => a - b));
  const values = new Float32Array(indices.length);
  let norm = 0;
  for (const c of counts.values()) norm += c * c;
  const scale = Math.min(1, maxNorm / Math.sqrt(norm));
  indices.forEach((j, k) => (values[k] = counts.get(j)! * scale));
  return { indices, values };
}

// ---- the model ----

export function newModel(opts: { features: number; ngrams: number; classes: string[] }): LinearTextModel {
  return {
    features: opts.features,
    ngrams: opts.ngrams,
    classes: [...opts.classes],
    weights: new Float32Array(opts.classes.length * opts.features),
    bias: new Float32Array(opts.classes.length),
  };
}

/** Softmax of `logits` in place (max-shifted, so large logits do not overflow). */
export function softmax(logits: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (let c = 0; c < logits.length; c++) sum += logits[c] = Math.exp(logits[c]! - max);
  for (let c = 0; c < logits.length; c++) logits[c]! /= sum;
  return logits;
}

/** The class probabilities of one featurized text. */
export function probabilitiesOf(model: LinearTextModel, x: SparseVector): Float64Array {
  const { features, weights } = model;
  const logits = Float64Array.from(model.bias);
  for (let c = 0; c < logits.length; c++) {
    let z = logits[c]!;
    const row = c * features;
    for (let k = 0; k < x.indices.length; k++) z += weights[row + x.indices[k]!]! * x.values[k]!;
    logits[c] = z;
  }
  return softmax(logits);
}

/** The most probable label of `text` (the first class on a tie), with every class's probability. */
export function predict(model: LinearTextModel, text: string): Prediction {
  const p = probabilitiesOf(model, featurize(text, model.features, model.ngrams));
  let best = 0;
  for (let c = 1; c < p.length; c++) if (p[c]! > p[best]!) best = c;
  const probabilities: Record<string, number> = {};
  model.classes.forEach((label, c) => (probabilities[label] = p[c]!));
  return { label: model.classes[best]!, score: p[best]!, probabilities };
}

// ---- the directory ----

const issuesText = (error: z.ZodError): string =>
  error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');

function parseModelJson(path: string, text: string): ModelJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not JSON (${(err as Error).message})`);
  }
  const parsed = modelJsonSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${path}: ${issuesText(parsed.error)}`);
  return parsed.data;
}

/** The file of tensor `name`, checked to have the shape this model needs. */
function tensorFile(path: string, json: ModelJson, name: string, shape: number[]): string {
  const entry = json.tensors.find((t) => t.name === name);
  if (!entry) throw new Error(`${path}: tensors: no "${name}" tensor`);
  const text = (s: number[]): string => `[${s.join(', ')}]`;
  if (text(entry.shape) !== text(shape))
    throw new Error(`${path}: tensors: "${name}" has shape ${text(entry.shape)}, expected ${text(shape)}`);
  return entry.file;
}

async function readTensor(dir: string, file: string, length: number): Promise<Float32Array> {
  const path = join(dir, file);
  const bytes = await readFile(path);
  if (bytes.byteLength !== length * 4)
    throw new Error(`${path}: ${bytes.byteLength} bytes, expected ${length * 4} (${length} float32)`);
  return decodeF32(bytes);
}

/** The model in `dir`, validated: model.json against the schema, every tensor's shape and byte size. */
export async function readModelDir(dir: string): Promise<LinearTextModel> {
  const path = join(dir, modelFile);
  const json = parseModelJson(path, await readFile(path, 'utf8'));
  const c = json.classes.length;
  const weightsFile = tensorFile(path, json, 'weights', [c, json.features]);
  const biasFile = tensorFile(path, json, 'bias', [c]);
  return {
    features: json.features,
    ngrams: json.ngrams,
    classes: json.classes,
    weights: await readTensor(dir, weightsFile, c * json.features),
    bias: await readTensor(dir, biasFile, c),
    ...(json.examples !== undefined && { examples: json.examples }),
  };
}

/** Writes `model` to `dir` (created if need be): the tensors first, model.json last. */
export async function writeModelDir(dir: string, model: LinearTextModel): Promise<void> {
  const c = model.classes.length;
  if (model.weights.length !== c * model.features || model.bias.length !== c)
    throw new Error(`model tensors do not match ${c} classes × ${model.features} features`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'weights.f32'), encodeF32(model.weights));
  await writeFile(join(dir, 'bias.f32'), encodeF32(model.bias));
  const json = {
    format: modelFormat,
    features: model.features,
    ngrams: model.ngrams,
    classes: model.classes,
    tensors: [
      { name: 'weights', file: 'weights.f32', shape: [c, model.features] },
      { name: 'bias', file: 'bias.f32', shape: [c] },
    ],
    ...(model.examples !== undefined && { examples: model.examples }),
  };
  await writeFile(join(dir, modelFile), `${JSON.stringify(json, null, 2)}\n`);
}
