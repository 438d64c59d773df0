/**
 * The built-in reduce of `rounds` mode: the ranks' checkpoints averaged
 * element-wise into the round's model (local SGD with averaging; weighted by
 * the examples each rank saw, it is FedAvg).
 *
 * Generic over any checkpoint in this layout, not only the text model's:
 *
 *   model.json   any JSON object with
 *                  "tensors": [{ "name": string, "file": string, "shape": number[] }, ...]
 *                  "examples": number        (optional)
 *   <file>       each tensor as raw little-endian float32, exactly product(shape) × 4 bytes.
 *
 * Every input must list the same tensor names with the same shapes. The
 * output's model.json is the first input's, its `examples` the inputs' sum
 * (dropped unless every input has one); its tensor files are named as the
 * first input names them. Weights: `opts.weights` when given, else each
 * input's `examples` when every input has a positive one, else equal.
 *
 * Memory is bounded whatever the tensor sizes: one chunk of one tensor from
 * every input at a time.
 */
import { mkdir, open, readFile, writeFile, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';

const modelFile = 'model.json';
/** Elements of a tensor read from each input per step (4 MiB of float32). */
const chunkElements = 1 << 20;
const littleEndian = endianness() === 'LE';

/** A tensor file name: a plain name inside the model directory, nothing that climbs out of it. */
export const tensorFileName = z
  .string()
  .min(1)
  .max(255)
  .refine((f) => !/[/\\\0]/.test(f) && f !== '.' && f !== '..' && f !== modelFile, {
    message: 'must be a plain file name inside the model directory',
  });

const descriptorSchema = z.looseObject({
  tensors: z
    .array(z.object({ name: z.string().min(1), file: tensorFileName, shape: z.array(z.number().int().nonnegative()) }))
    .min(1),
  examples: z.number().nonnegative().optional(),
});

interface Input {
  dir: string;
  /** model.json as it was, unknown fields kept. */
  raw: Record<string, unknown>;
  tensors: Map<string, { file: string; shape: number[] }>;
  examples: number | undefined;
}

export interface AverageResult {
  tensors: number;
  /** The weight each input counted with, normalised to sum 1. */
  weights: number[];
  examples?: number;
}

/** Raw little-endian float32 bytes as a Float32Array (copied: file buffers need not be aligned). */
export function decodeF32(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(Math.floor(bytes.byteLength / 4));
  if (littleEndian) new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 4));
  else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

/** A Float32Array as raw little-endian bytes (a view of it on a little-endian machine). */
export function encodeF32(values: Float32Array): Uint8Array {
  if (littleEndian) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return out;
}

const elementsOf = (shape: number[]): number => shape.reduce((n, d) => n * d, 1);
const shapeText = (shape: number[]): string => `[${shape.join(', ')}]`;

async function readInput(dir: string): Promise<Input> {
  const path = join(dir, modelFile);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(
      `${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`,
    );
  }
  const parsed = descriptorSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new Error(`${path}: ${issues.join('; ')}`);
  }
  const tensors = new Map<string, { file: string; shape: number[] }>();
  const files = new Set<string>();
  for (const t of parsed.data.tensors) {
    if (tensors.has(t.name)) throw new Error(`${path}: tensor "${t.name}" is listed twice`);
    if (files.has(t.file)) throw new Error(`${path}: tensor "${t.name}": file ${t.file} holds another tensor too`);
    files.add(t.file);
    tensors.set(t.name, { file: t.file, shape: t.shape });
  }
  return { dir, raw: json as Record<string, unknown>, tensors, examples: parsed.data.examples };
}

/** Throws unless `other` lists exactly the tensors of `first`, with the same shapes. */
function checkSameTensors(first: Input, other: Input): void {
  for (const [name, t] of first.tensors) {
    const o = other.tensors.get(name);
    if (!o) throw new Error(`${other.dir}: no tensor "${name}" (${first.dir} has it)`);
    if (shapeText(o.shape) !== shapeText(t.shape))
      throw new Error(
        `${other.dir}: tensor "${name}" has shape ${shapeText(o.shape)}, ${first.dir} has ${shapeText(t.shape)}`,
      );
  }
  for (const name of other.tensors.keys())
    if (!first.tensors.has(name)) throw new Error(`${other.dir}: tensor "${name}" is not in ${first.dir}`);
}

/** Each input's weight: as given, else by examples when every input has some, else equal. */
function weightsOf(inputs: Input[], given: number[] | undefined): number[] {
  if (given) {
    if (given.length !== inputs.length)
      throw new Error(`${given.length} weights for ${inputs.length} inputs: give one weight per input`);
    if (given.some((w) => !Number.isFinite(w) || w < 0)) throw new Error('weights must be finite and >= 0');
    if (!given.some((w) => w > 0)) throw new Error('at least one weight must be > 0');
    return given;
  }
  const examples = inputs.map((i) => i.examples ?? 0);
  return examples.every((e) => e > 0) ? examples : inputs.map(() => 1);
}

/** Reads exactly `bytes.length` bytes at `position` (a short read would be a truncated file). */
async function readFully(handle: FileHandle, bytes: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesRead } = await handle.read(bytes, done, bytes.length - done, position + done);
    if (bytesRead === 0) throw new Error(`${path}: ended early, at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Opens every input's file of one tensor, checking that each holds exactly `elements` float32. */
async function openTensor(inputs: Input[], name: string, elements: number): Promise<FileHandle[]> {
  const handles: FileHandle[] = [];
  try {
    for (const input of inputs) {
      const path = join(input.dir, input.tensors.get(name)!.file);
      const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
        throw new Error(
          `${input.dir}: tensor "${name}": ${err.code === 'ENOENT' ? `${path} is missing` : err.message}`,
        );
      });
      handles.push(handle);
      const { size } = await handle.stat();
      if (size !== elements * 4)
        throw new Error(`${input.dir}: tensor "${name}": ${path} has ${size} bytes, expected ${elements * 4}`);
    }
    return handles;
  } catch (err) {
    await Promise.all(handles.map((h) => h.close()));
    throw err;
  }
}

/** One tensor averaged into `outPath`, a chunk at a time. */
async function averageTensor(inputs: Input[], name: string, weights: number[], outPath: string): Promise<void> {
  const elements = elementsOf(inputs[0]!.tensors.get(name)!.shape);
  const total = weights.reduce((a, b) => a + b, 0);
  const handles = await openTensor(inputs, name, elements);
  const out = await open(outPath, 'w');
  try {
    const chunk = new Float32Array(Math.min(chunkElements, elements));
    const sum = new Float64Array(chunk.length);
    for (let start = 0; start < elements; start += chunk.length) {
      const n = Math.min(chunk.length, elements - start);
      sum.fill(0, 0, n);
      for (const [i, handle] of handles.entries()) {
        const bytes = new Uint8Array(chunk.buffer, 0, n * 4);
        await readFully(handle, bytes, start * 4, join(inputs[i]!.dir, inputs[i]!.tensors.get(name)!.file));
        const values = littleEndian ? chunk : decodeF32(bytes);
        const w = weights[i]!;
        for (let k = 0; k < n; k++) sum[k]! += w * values[k]!;
      }
      for (let k = 0; k < n; k++) chunk[k] = sum[k]! / total;
      await out.write(encodeF32(chunk.subarray(0, n)));
    }
  } finally {
    await out.close();
    await Promise.all(handles.map((h) => h.close()));
  }
}

/**
 * Averages the checkpoints in `inputDirs` into `outDir` (created if need be):
 * every tensor element-wise, weighted (see the header), then model.json last,
 * so that a model.json in `outDir` means the whole model is there.
 */
export async function averageModelDirs(
  inputDirs: string[],
  outDir: string,
  opts: { weights?: number[] } = {},
): Promise<AverageResult> {
  if (inputDirs.length === 0) throw new Error('no checkpoints to average');
  if (inputDirs.some((d) => resolve(d) === resolve(outDir)))
    throw new Error(`the output directory ${outDir} is also an input`);
  const inputs: Input[] = [];
  for (const dir of inputDirs) inputs.push(await readInput(dir));
  const first = inputs[0]!;
  for (const other of inputs.slice(1)) checkSameTensors(first, other);
  const weights = weightsOf(inputs, opts.weights);

  await mkdir(outDir, { recursive: true });
  for (const [name, t] of first.tensors) await averageTensor(inputs, name, weights, join(outDir, t.file));

  const examples = inputs.every((i) => i.examples !== undefined)
    ? inputs.reduce((n, i) => n + i.examples!, 0)
    : undefined;
  const { examples: _dropped, ...rest } = first.raw;
  const json = { ...rest, ...(examples !== undefined && { examples }) };
  await writeFile(join(outDir, modelFile), `${JSON.stringify(json, null, 2)}\n`);
  const total = weights.reduce((a, b) => a + b, 0);
  return {
    tensors: first.tensors.size,
    weights: weights.map((w) => w / total),
    ...(examples !== undefined && { examples }),
  };
}
