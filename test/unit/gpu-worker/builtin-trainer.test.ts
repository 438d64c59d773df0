/**
 * The built-in trainer (gpu-worker/training/builtin/): the generic reduce
 * averages float32 checkpoints exactly (plain, weighted, chunked) and names
 * what is wrong with a bad input; the text model featurizes and predicts
 * deterministically and its directory round-trips and is validated; and the
 * program, run as a real child process under the runner contract over two
 * shards of the UCI sentiment sentences for three averaged rounds, learns a
 * model that classifies sentences no rank saw.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { averageModelDirs, decodeF32 } from '../../../gpu-worker/training/builtin/average-tensors.ts';
import {
  featurize,
  hashString,
  newModel,
  predict,
  readModelDir,
  writeModelDir,
  type LinearTextModel,
} from '../../../gpu-worker/training/builtin/linear-text-model.ts';

const repoRoot = resolve(import.meta.dirname, '../../..');
const programPath = join(repoRoot, 'gpu-worker/training/builtin/text-classifier.ts');
const sentences = resolve(repoRoot, '../shared/data/sentiment-labelled-sentences');

let dir: string;
let n = 0;
/** A fresh directory under this file's temp dir. */
const fresh = async (label: string): Promise<string> => {
  const d = join(dir, `${label}-${n++}`);
  await mkdir(d, { recursive: true });
  return d;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-builtin-trainer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const f32Bytes = (values: number[]): Buffer => Buffer.from(Float32Array.from(values).buffer);

/** A checkpoint in the generic layout: model.json listing `tensors`, one .f32 file each. */
async function checkpoint(
  tensors: Record<string, { shape: number[]; values: number[] }>,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const d = await fresh('ckpt');
  const list = Object.entries(tensors).map(([name, t]) => ({ name, file: `${name}.f32`, shape: t.shape }));
  for (const [name, t] of Object.entries(tensors)) await writeFile(join(d, `${name}.f32`), f32Bytes(t.values));
  await writeFile(join(d, 'model.json'), JSON.stringify({ ...extra, tensors: list }));
  return d;
}

describe('averageModelDirs', () => {
  // As stored: float32 (the mean is taken of what the files hold).
  const a = [0.1, -3.7, 1e-3, 123456.789, 0, 2 ** -20].map(Math.fround);
  const b = [0.2, 5.25, -7e-3, 0.5, 1, 3].map(Math.fround);
  const c = [-1, 1 / 3, 9.75, -42, 1e6, 0.7].map(Math.fround);
  const bias = (v: number[]) => ({ shape: [2], values: v.slice(0, 2) });
  const w = (v: number[]) => ({ shape: [2, 3], values: v });

  it('writes the element-wise mean of two and of three checkpoints, bit for bit', async () => {
    const ins = [
      await checkpoint({ w: w(a), bias: bias(a) }),
      await checkpoint({ w: w(b), bias: bias(b) }),
      await checkpoint({ w: w(c), bias: bias(c) }),
    ];
    for (const k of [2, 3]) {
      const out = await fresh('out');
      const result = await averageModelDirs(ins.slice(0, k), out);
      expect(result.tensors).toBe(2);
      const vecs = [a, b, c].slice(0, k);
      const mean = a.map((_, i) => vecs.reduce((s, v) => s + v[i]!, 0) / k);
      expect(await readFile(join(out, 'w.f32'))).toEqual(f32Bytes(mean));
      expect(await readFile(join(out, 'bias.f32'))).toEqual(f32Bytes(mean.slice(0, 2)));
      expect(JSON.parse(await readFile(join(out, 'model.json'), 'utf8'))).toEqual(
        JSON.parse(await readFile(join(ins[0]!, 'model.json'), 'utf8')),
      );
    }
  });

  it('weights by opts.weights, else by examples (summed into the output, other fields kept)', async () => {
    const ins = [
      await checkpoint({ w: w(a) }, { format: 'x', examples: 100, extra: { kept: true } }),
      await checkpoint({ w: w(b) }, { format: 'y', examples: 300 }),
    ];
    const weighted = (wa: number, wb: number) => a.map((_, i) => (wa * a[i]! + wb * b[i]!) / (wa + wb));

    const given = await fresh('out');
    await averageModelDirs(ins, given, { weights: [3, 1] });
    expect(await readFile(join(given, 'w.f32'))).toEqual(f32Bytes(weighted(3, 1)));

    const byExamples = await fresh('out');
    const result = await averageModelDirs(ins, byExamples);
    expect(result).toEqual({ tensors: 1, weights: [0.25, 0.75], examples: 400 });
    expect(await readFile(join(byExamples, 'w.f32'))).toEqual(f32Bytes(weighted(100, 300)));
    const json = JSON.parse(await readFile(join(byExamples, 'model.json'), 'utf8'));
    expect(json).toEqual({ format: 'x', examples: 400, extra: { kept: true }, tensors: [expect.any(Object)] });

    await expect(averageModelDirs(ins, await fresh('out'), { weights: [1] })).rejects.toThrow(/1 weights for 2 inputs/);
    await expect(averageModelDirs(ins, await fresh('out'), { weights: [0, 0] })).rejects.toThrow(/weight must be > 0/);
  });

  it('streams a tensor larger than one chunk', async () => {
    const size = (1 << 20) + 3;
    const x = Array.from({ length: size }, (_, i) => i % 1000);
    const y = Array.from({ length: size }, (_, i) => -(i % 7) / 4);
    const out = await fresh('out');
    await averageModelDirs(
      [
        await checkpoint({ big: { shape: [size], values: x } }),
        await checkpoint({ big: { shape: [size], values: y } }),
      ],
      out,
    );
    const got = decodeF32(await readFile(join(out, 'big.f32')));
    expect(got.length).toBe(size);
    for (const i of [0, 1, 999, 1 << 20, size - 1]) expect(got[i]).toBe(Math.fround((x[i]! + y[i]!) / 2));
  });

  it('names the input and the tensor when shapes or names differ', async () => {
    const first = await checkpoint({ w: w(a), bias: bias(a) });
    const otherShape = await checkpoint({ w: { shape: [3, 2], values: b }, bias: bias(b) });
    await expect(averageModelDirs([first, otherShape], await fresh('out'))).rejects.toThrow(
      `${otherShape}: tensor "w" has shape [3, 2], ${first} has [2, 3]`,
    );
    const missing = await checkpoint({ w: w(b) });
    await expect(averageModelDirs([first, missing], await fresh('out'))).rejects.toThrow(
      `${missing}: no tensor "bias" (${first} has it)`,
    );
    const extra = await checkpoint({ w: w(b), bias: bias(b), more: bias(b) });
    await expect(averageModelDirs([first, extra], await fresh('out'))).rejects.toThrow(
      `${extra}: tensor "more" is not in ${first}`,
    );
  });

  it('names a missing or short tensor file, a missing or bad model.json', async () => {
    const first = await checkpoint({ w: w(a) });
    const gone = await checkpoint({ w: w(b) });
    await rm(join(gone, 'w.f32'));
    await expect(averageModelDirs([first, gone], await fresh('out'))).rejects.toThrow(
      `${gone}: tensor "w": ${join(gone, 'w.f32')} is missing`,
    );
    const short = await checkpoint({ w: w(b) });
    await writeFile(join(short, 'w.f32'), f32Bytes(b.slice(1)));
    await expect(averageModelDirs([first, short], await fresh('out'))).rejects.toThrow(
      `${join(short, 'w.f32')} has 20 bytes, expected 24`,
    );
    const empty = await fresh('empty');
    await expect(averageModelDirs([first, empty], await fresh('out'))).rejects.toThrow(
      `${join(empty, 'model.json')}: missing`,
    );
    const bad = await fresh('bad');
    await writeFile(
      join(bad, 'model.json'),
      JSON.stringify({ tensors: [{ name: 'w', file: '../w.f32', shape: [6] }] }),
    );
    await expect(averageModelDirs([bad], await fresh('out'))).rejects.toThrow(
      `${join(bad, 'model.json')}: tensors.0.file: must be a plain file name`,
    );
  });
});

describe('linear-text-model', () => {
  it('hashes with FNV-1a 32-bit and featurizes deterministically, case and punctuation aside', () => {
    expect(hashString('a')).toBe(0xe40c292c);
    expect(hashString('foobar')).toBe(0xbf9cf968);
    expect([...featurize('A!', 1 << 20, 1).indices]).toEqual([0xe40c292c % (1 << 20)]);
    const x = featurize('Not good, not GOOD at all.', 1 << 18, 2);
    expect(featurize('not good not good at all', 1 << 18, 2)).toEqual(x);
    // Unigrams not, good, at, all and bigrams "not good", "good not", "good at", "at all": 8 distinct.
    expect(x.indices.length).toBe(8);
    expect([...x.indices]).toEqual([...x.indices].sort((p, q) => p - q));
    const notGood = x.indices.indexOf(hashString('not good') % (1 << 18));
    expect(x.values[notGood]).toBe(2);
    expect(featurize('', 16, 2)).toEqual({ indices: new Uint32Array(), values: new Float32Array() });
    // A long text is scaled down to norm 8.
    const long = featurize(Array.from({ length: 500 }, (_, i) => `w${i}`).join(' '), 1 << 20, 1);
    expect(Math.hypot(...long.values)).toBeCloseTo(8, 4);
  });

  it('predicts the most probable class with every probability', () => {
    const model = newModel({ features: 1 << 10, ngrams: 1, classes: ['neg', 'pos'] });
    expect(predict(model, 'anything')).toEqual({ label: 'neg', score: 0.5, probabilities: { neg: 0.5, pos: 0.5 } });
    const great = featurize('great', model.features, 1).indices[0]!;
    model.weights[model.features + great] = 3; // pos · "great"
    const p = predict(model, 'Great!');
    expect(p.label).toBe('pos');
    expect(p.score).toBeCloseTo(1 / (1 + Math.exp(-3)), 12);
    expect(p.probabilities.neg! + p.probabilities.pos!).toBeCloseTo(1, 12);
    expect(predict(model, 'Great!')).toEqual(p);
  });

  it('round-trips through a model directory', async () => {
    const model: LinearTextModel = {
      ...newModel({ features: 64, ngrams: 2, classes: ['a', 'b', 'c'] }),
      examples: 12,
    };
    model.weights.forEach((_, i) => (model.weights[i] = Math.sin(i) * 10));
    model.bias.set([0.5, -0.25, 1e-7]);
    const d = await fresh('model');
    await writeModelDir(d, model);
    expect((await readFile(join(d, 'weights.f32'))).length).toBe(3 * 64 * 4);
    expect(await readModelDir(d)).toEqual(model);
    const json = JSON.parse(await readFile(join(d, 'model.json'), 'utf8'));
    expect(json).toEqual({
      format: 'interfleet-linear-text-v1',
      features: 64,
      ngrams: 2,
      classes: ['a', 'b', 'c'],
      tensors: [
        { name: 'weights', file: 'weights.f32', shape: [3, 64] },
        { name: 'bias', file: 'bias.f32', shape: [3] },
      ],
      examples: 12,
    });
  });

  it('refuses a bad model directory, naming the file and the field', async () => {
    const d = await fresh('model');
    await writeModelDir(d, newModel({ features: 8, ngrams: 1, classes: ['0', '1'] }));
    const path = join(d, 'model.json');
    const good = JSON.parse(await readFile(path, 'utf8'));
    const expectBad = async (json: unknown, message: string) => {
      await writeFile(path, typeof json === 'string' ? json : JSON.stringify(json));
      await expect(readModelDir(d)).rejects.toThrow(`${path}: ${message}`);
    };
    await expectBad('{', 'not JSON');
    await expectBad({ ...good, format: 'v0' }, 'format:');
    await expectBad({ ...good, features: 0 }, 'features:');
    await expectBad({ ...good, classes: ['0', '0'] }, 'classes: labels must be distinct');
    await expectBad({ ...good, tensors: [good.tensors[0]] }, 'tensors: no "bias" tensor');
    await expectBad(
      { ...good, tensors: [{ ...good.tensors[0], shape: [2, 4] }, good.tensors[1]] },
      'tensors: "weights" has shape [2, 4], expected [2, 8]',
    );
    await writeFile(path, JSON.stringify(good));
    await writeFile(join(d, 'bias.f32'), Buffer.alloc(4));
    await expect(readModelDir(d)).rejects.toThrow(`${join(d, 'bias.f32')}: 4 bytes, expected 8`);
  });
});

// ---- the program ----

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The program as the runner starts it: its own process, the contract's variables. */
function runProgram(vars: Record<string, string>): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', programPath], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', ...(process.env.TMPDIR && { TMPDIR: process.env.TMPDIR }), ...vars },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const metricsOf = (stdout: string): Array<{ metric: string; value: number; step?: number }> =>
  stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));

interface Sentence {
  text: string;
  label: string;
}

describe('text-classifier program', () => {
  const heldOut: Sentence[] = [];
  const shards: string[] = [];

  beforeAll(async () => {
    // Every 10th sentence is held out; the rest go to rank 0 and rank 1 in turn.
    const ranks: Sentence[][] = [[], []];
    for (const file of (await readdir(sentences)).filter((f) => f.endsWith('_labelled.txt')).sort()) {
      const lines = (await readFile(join(sentences, file), 'utf8')).split(/\r\n|\n|\r/).filter((l) => l.includes('\t'));
      lines.forEach((line, i) => {
        const tab = line.lastIndexOf('\t');
        const s = { text: line.slice(0, tab).trim(), label: line.slice(tab + 1).trim() };
        if (i % 10 === 0) heldOut.push(s);
        else ranks[i % 2]!.push(s);
      });
    }
    // Rank 0: TSV, one file with lone \r line ends, plus a malformed and a blank line.
    // Rank 1: JSONL with \r\n, in a subdirectory, and TSV.
    const [r0, r1] = ranks as [Sentence[], Sentence[]];
    const tsv = (s: Sentence[]) => s.map((e) => `${e.text}\t${e.label}`);
    const half0 = r0.length >> 1;
    const half1 = r1.length >> 1;
    const d0 = await fresh('shard');
    await writeFile(join(d0, 'a.txt'), `${tsv(r0.slice(0, half0)).join('\n')}\nno tab on this line\n\n`);
    await writeFile(join(d0, 'b.txt'), tsv(r0.slice(half0)).join('\r'));
    const d1 = await fresh('shard');
    await mkdir(join(d1, 'sub'));
    await writeFile(
      join(d1, 'sub', 'a.jsonl'),
      `${r1
        .slice(0, half1)
        .map((e, i) => JSON.stringify({ text: e.text, label: i % 2 ? Number(e.label) : e.label }))
        .join('\r\n')}\r\n{"text": 1}\r\n`,
    );
    await writeFile(join(d1, 'b.tsv'), `${tsv(r1.slice(half1)).join('\n')}\n`);
    shards.push(d0, d1);
  });

  const accuracy = (model: LinearTextModel): number =>
    heldOut.filter((s) => predict(model, s.text).label === s.label).length / heldOut.length;

  it('learns over three averaged rounds of two ranks: held-out accuracy ≥ 0.75, above the majority class', async () => {
    const epochs = 5;
    let init = await fresh('init'); // round 1: empty
    const perRound: number[] = [];
    const firstRuns: Run[] = [];
    for (let round = 1; round <= 3; round++) {
      const outputs = [await fresh(`r${round}-k0`), await fresh(`r${round}-k1`)];
      const runs = await Promise.all(
        shards.map((data, rank) =>
          runProgram({
            INTERFLEET_DATA_DIR: data,
            INTERFLEET_INIT_DIR: init,
            INTERFLEET_OUTPUT_DIR: outputs[rank]!,
            INTERFLEET_PARAMS: JSON.stringify({ epochs }),
            RANK: String(rank),
            WORLD_SIZE: '2',
            INTERFLEET_ROUND: String(round),
          }),
        ),
      );
      if (round === 1) firstRuns.push(...runs);
      for (const run of runs) {
        expect(run.code, run.stderr).toBe(0);
        const metrics = metricsOf(run.stdout);
        for (const m of metrics) expect(typeof m.metric).toBe('string');
        expect(metrics.filter((m) => m.metric === 'loss').map((m) => m.step)).toEqual(
          Array.from({ length: epochs }, (_, i) => i + 1),
        );
        for (const name of ['train_accuracy', 'eval_accuracy', 'eval_loss', 'examples', 'train_seconds'])
          expect(metrics.find((m) => m.metric === name)?.value, name).toEqual(expect.any(Number));
      }
      const model = await fresh(`r${round}-model`);
      await averageModelDirs(outputs, model);
      const averaged = await readModelDir(model);
      const examples = runs.map((r) => metricsOf(r.stdout).find((m) => m.metric === 'examples')!.value);
      expect(averaged.examples).toBe(examples[0]! + examples[1]!);
      perRound.push(accuracy(averaged));
      init = model;
    }

    const [r0, r1] = firstRuns as [Run, Run];
    expect(r0.stderr).toContain('skipped 1 malformed and 1 blank line(s)');
    expect(r1.stderr).toContain('skipped 1 malformed and 0 blank line(s)');
    const losses = metricsOf(r0.stdout).filter((m) => m.metric === 'loss');
    expect(losses.at(-1)!.value).toBeLessThan(losses[0]!.value);

    const majority = Math.max(...['0', '1'].map((l) => heldOut.filter((s) => s.label === l).length)) / heldOut.length;
    console.log(
      `held-out accuracy by round ${perRound.map((a) => a.toFixed(3)).join(', ')} ` +
        `(${heldOut.length} sentences; majority ${majority.toFixed(3)})`,
    );
    expect(perRound[2]).toBeGreaterThanOrEqual(0.75);
    expect(perRound[2]).toBeGreaterThan(majority + 0.1);
  });

  it('trains the same model from the same seed, rank and round', async () => {
    const outs = [await fresh('det'), await fresh('det')];
    const runs = await Promise.all(
      outs.map((out) =>
        runProgram({
          INTERFLEET_DATA_DIR: shards[0]!,
          INTERFLEET_OUTPUT_DIR: out,
          INTERFLEET_HYPERPARAMS: JSON.stringify({ epochs: 2, seed: 7, features: 1 << 12 }),
          RANK: '0',
          INTERFLEET_ROUND: '1',
        }),
      ),
    );
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    // Every metric but the time it took.
    const learned = (stdout: string) => stdout.split('\n').filter((l) => !l.includes('"train_seconds"'));
    expect(learned(runs[0]!.stdout)).toEqual(learned(runs[1]!.stdout));
    expect(metricsOf(runs[0]!.stdout).find((m) => m.metric === 'train_seconds')?.value).toBeGreaterThan(0);
    expect(await readFile(join(outs[0]!, 'weights.f32'))).toEqual(await readFile(join(outs[1]!, 'weights.f32')));
  });

  it('exits 3 without data and 2 on bad hyperparameters, saying why', async () => {
    const [empty, bad, unknown] = await Promise.all([
      fresh('out').then(async (out) =>
        runProgram({ INTERFLEET_DATA_DIR: await fresh('nodata'), INTERFLEET_OUTPUT_DIR: out }),
      ),
      fresh('out').then((out) =>
        runProgram({
          INTERFLEET_DATA_DIR: shards[0]!,
          INTERFLEET_OUTPUT_DIR: out,
          INTERFLEET_PARAMS: JSON.stringify({ learning_rate: -1, holdout: 0.9 }),
        }),
      ),
      fresh('out').then((out) =>
        runProgram({
          INTERFLEET_DATA_DIR: shards[0]!,
          INTERFLEET_OUTPUT_DIR: out,
          INTERFLEET_PARAMS: '{"epoch": 3}',
        }),
      ),
    ]);
    expect(empty.code).toBe(3);
    expect(empty.stderr).toContain('no training examples in INTERFLEET_DATA_DIR');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('bad hyperparameters in INTERFLEET_PARAMS: learning_rate:');
    expect(bad.stderr).toContain('holdout:');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unrecognized key.*"epoch"/);
  });
});
