/**
 * Finalisation against a real Redis and file:// storage: parts merged in input
 * order, remainder lines for chunks that never ran (cancel, expiry, failure),
 * an exact manifest, the batch ended and closed, and re-runs after a crash
 * that change nothing.
 */
import { batchSpec } from '../helpers/batch-spec.ts';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, batchFiles, type BatchSpec, chunkJobFor } from '../../common/batch/batch-state.ts';
import { readPlan } from '../../common/batch/plan-file.ts';
import type { Chunk } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage, StorageError, type Storage } from '../../common/storage/index.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { runChunk } from '../../gpu-worker/bulk/chunk-runner.ts';
import { FinalizeError, finalizeBatch, type FinalizeDeps } from '../../producer/batch/finalizer.ts';
import { manifestSchema } from '../../producer/batch/manifest.ts';
import { runPlanJob } from '../../producer/batch/plan-job.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

const config = testConfig();
const prefix = config.redis.prefix;
const storage = createFileStorage();
const logger = silentLogger();
let redis: Redis;
let store: BatchStore;
let dir: string;
let clock = 1_750_000_000_000;
const now = (): number => (clock += 1000);

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  store = new BatchStore(redis, prefix);
  dir = await mkdtemp(join(tmpdir(), 'interfleet-finalize-'));
});
afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

const sentiment = (id: string): string =>
  JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/infer', body: { input: { task: 'sentiment', text: id } } });

/**
 * 21 input lines: 20 requests (one of them invalid JSON, so it has no
 * custom_id) and a blank line, cut 4 requests per chunk into 5 chunks.
 */
function inputLines(): string[] {
  const lines = Array.from({ length: 20 }, (_, i) => sentiment(`r-${i + 1}`));
  lines[5] = '{not json';
  lines.splice(9, 0, '   ');
  return lines;
}

interface Fixture {
  spec: BatchSpec;
  chunks: Chunk[];
  files: ReturnType<typeof batchFiles>;
}

/** A planned batch over `inputLines()` in one object, or over `objects` (name → lines) under one prefix. */
async function plannedBatch(
  name: string,
  objects?: Record<string, string[]>,
  want = { total: 20, chunks: 5 },
): Promise<Fixture> {
  const sub = join(dir, name);
  let input: string;
  if (objects) {
    const inputDir = join(dir, `${name}-in`);
    await mkdir(inputDir);
    for (const [object, lines] of Object.entries(objects))
      await writeFile(join(inputDir, object), `${lines.join('\n')}\n`);
    input = `${pathToFileURL(inputDir).href}/`;
  } else {
    const inputPath = join(dir, `${name}.jsonl`);
    await writeFile(inputPath, `${inputLines().join('\n')}\n`);
    input = pathToFileURL(inputPath).href;
  }
  const created = now();
  const spec = batchSpec(created, {
    model: 'default',
    input,
    outputPrefix: `${pathToFileURL(sub).href}/`,
    tenant: 'default',
  });
  await store.create(spec);
  const planned = await runPlanJob(
    spec.id,
    { batch: { chunkLines: 4, chunkBytes: 1 << 20 }, store, storage, logger, now },
    { lastAttempt: true },
  );
  expect(planned).toEqual({ outcome: 'planned', ...want });
  const files = batchFiles(spec.outputPrefix);
  const chunks: Chunk[] = [];
  for await (const c of readPlan(storage, files.plan)) chunks.push(c);
  return { spec, chunks, files };
}

/** What a gpu-worker does for a chunk it runs: both parts, then settle it done. */
async function runDone(f: Fixture, index: number): Promise<void> {
  const job = chunkJobFor(f.spec, f.chunks[index]!);
  const result = await runChunk(job, { storage, backend: createEchoBackend() });
  await store.settleChunk(f.spec.id, index, { outcome: 'done', completed: result.completed, failed: result.failed });
}

async function admit(f: Fixture, upTo: number): Promise<void> {
  await store.setFields(f.spec.id, { cursor: upTo, admitted: upTo });
}

interface Line {
  id: string;
  custom_id: string | null;
  line?: number;
  input?: string;
  response: unknown;
  error: { code: string; message: string } | null;
}

async function jsonl(uri: string): Promise<Line[]> {
  const text = await readFile(new URL(uri), 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

const lineOf = (l: Line): number => Number(l.id.slice(l.id.lastIndexOf('_') + 1));
const deps = (overrides: Partial<FinalizeDeps> = {}): FinalizeDeps => ({ store, storage, logger, now, ...overrides });

/** The 1-based numbers of the input's non-blank lines, and the custom_id each carries (null: invalid JSON). */
function expectedLines(): Map<number, string | null> {
  const out = new Map<number, string | null>();
  inputLines().forEach((text, i) => {
    if (text.trim() === '') return;
    out.set(i + 1, text.startsWith('{not') ? null : (JSON.parse(text) as { custom_id: string }).custom_id);
  });
  return out;
}

function linesOfChunks(f: Fixture, indexes: number[]): number[] {
  const expected = [...expectedLines().keys()];
  return expected.filter((n) =>
    indexes.some((i) => {
      const c = f.chunks[i]!;
      // Chunk i covers input lines firstLine .. the next chunk's firstLine - 1.
      const next = f.chunks[i + 1]?.firstLine ?? Number.POSITIVE_INFINITY;
      return n >= c.firstLine && n < next;
    }),
  );
}

async function partsLeft(f: Fixture): Promise<string[]> {
  return readdir(new URL(f.files.parts)).catch(() => []);
}

describe('finalize', () => {
  it('merges the parts of a completed batch in input order, writes an exact manifest, and ends the batch once', async () => {
    const f = await plannedBatch('completed');
    await admit(f, 5);
    for (let i = 0; i < 5; i++) await runDone(f, i);
    await store.transition(f.spec.id, ['in_progress'], 'finalizing', { finalizing_at: now() });

    const result = await finalizeBatch(f.spec.id, deps());
    expect(result.outcome).toBe('ended');

    const output = await jsonl(f.files.output);
    const errors = await jsonl(f.files.error);
    expect(output.map(lineOf)).toEqual([...output.map(lineOf)].sort((a, b) => a - b));
    expect(errors.map(lineOf)).toEqual([6]);
    expect(errors[0]!.error!.code).toBe('invalid_json');
    // Every request exactly once across both files, with its custom_id.
    const seen = [...output, ...errors].map((l) => [lineOf(l), l.custom_id] as const).sort((a, b) => a[0] - b[0]);
    expect(seen).toEqual([...expectedLines()].sort((a, b) => a[0] - b[0]));

    const manifest = manifestSchema.parse(JSON.parse(await readFile(new URL(f.files.manifest), 'utf8')));
    expect(manifest).toMatchObject({
      batch_id: f.spec.id,
      status: 'completed',
      stop_reason: null,
      input: { uri: f.spec.input, objects: 1 },
      request_counts: { total: 20, completed: 19, failed: 1 },
      not_run: 0,
      chunks: { total: 5, done: 5, not_run: 0, failed: 0 },
      output_file: { uri: f.files.output, bytes: (await readFile(new URL(f.files.output))).length },
    });
    expect(manifest.timings.completed_at).not.toBeNull();
    expect(manifest.timings.durations_ms.in_progress).toBeGreaterThan(0);

    const state = (await store.get(f.spec.id))!;
    expect(state.status).toBe('completed');
    expect(state.counters).toMatchObject({ total: 20, completed: 19, failed: 1, not_run: 0 });
    expect(state.timestamps.completed_at).toBe(manifest.timings.completed_at);
    expect(state.files).toEqual({ output: f.files.output, error: f.files.error, manifest: f.files.manifest });
    expect(await store.openIds()).not.toContain(f.spec.id);
    expect(await partsLeft(f)).toEqual([]);
    await expect(storage.stat(f.files.plan)).resolves.toBeDefined(); // the plan stays

    const outputBytes = await readFile(new URL(f.files.output));
    expect(await finalizeBatch(f.spec.id, deps())).toEqual({ outcome: 'already_final' });
    expect(await readFile(new URL(f.files.output))).toEqual(outputBytes);
    expect((await store.get(f.spec.id))!.counters.failed).toBe(1);
  });

  it('gives every line of a multi-object batch its own request id, though line numbers restart per object', async () => {
    const a = Array.from({ length: 6 }, (_, i) => sentiment(`a-${i + 1}`));
    const b = Array.from({ length: 6 }, (_, i) => sentiment(`b-${i + 1}`));
    b[2] = '{not json';
    const f = await plannedBatch('multi', { 'a.jsonl': a, 'b.jsonl': b }, { total: 12, chunks: 4 });
    await admit(f, 4);
    for (const i of [0, 1, 3]) await runDone(f, i); // chunk 2 (b's first four lines) never runs
    await store.transition(f.spec.id, ['in_progress'], 'finalizing', { stop: 'expired', finalizing_at: now() });
    expect((await finalizeBatch(f.spec.id, deps())).outcome).toBe('ended');

    const all = [...(await jsonl(f.files.output)), ...(await jsonl(f.files.error))];
    expect(all).toHaveLength(12);
    expect(new Set(all.map((l) => l.id)).size).toBe(12);
    // b's invalid line 3, named by its object: line numbers alone are ambiguous across objects.
    expect(all.filter((l) => l.line === 3).map((l) => [l.custom_id, l.input])).toEqual([
      [null, `${f.spec.input}b.jsonl`],
    ]);
    expect(
      all
        .filter((l) => l.custom_id !== null)
        .map((l) => l.custom_id)
        .sort(),
    ).toEqual([...a.map((_, i) => `a-${i + 1}`), ...b.map((_, i) => `b-${i + 1}`).filter((id) => id !== 'b-3')].sort());
  });

  it('after a cancel, marks every line of the chunks that never ran as batch_cancelled, in input order', async () => {
    const f = await plannedBatch('cancelled');
    await admit(f, 3);
    await runDone(f, 0);
    await runDone(f, 1);
    await store.transition(f.spec.id, ['in_progress'], 'cancelling', { stop: 'cancelled', cancelling_at: now() });
    await store.settleChunk(f.spec.id, 2, { outcome: 'skipped' }); // admitted, then skipped by its worker

    const result = await finalizeBatch(f.spec.id, deps());
    expect(result).toMatchObject({ outcome: 'ended', status: 'cancelled' });

    const output = await jsonl(f.files.output);
    const errors = await jsonl(f.files.error);
    expect(output.map(lineOf)).toEqual(linesOfChunks(f, [0, 1]).filter((n) => n !== 6));
    const cancelledLines = linesOfChunks(f, [2, 3, 4]);
    expect(errors.map(lineOf)).toEqual([6, ...cancelledLines]);
    const expected = expectedLines();
    for (const l of errors.slice(1)) {
      expect(l.error!.code).toBe('batch_cancelled');
      expect(l.line).toBe(lineOf(l));
      expect(l.custom_id).toBe(expected.get(lineOf(l)));
      expect(l.response).toBeNull();
    }

    const state = (await store.get(f.spec.id))!;
    expect(state.status).toBe('cancelled');
    expect(state.timestamps.cancelled_at).toBeDefined();
    expect(state.counters.not_run).toBe(cancelledLines.length);
    expect(state.counters.completed + state.counters.failed).toBe(state.counters.total);
    expect(result.outcome === 'ended' && result.manifest.chunks).toEqual({ total: 5, done: 2, not_run: 3, failed: 0 });
  });

  it('after expiry marks lines batch_expired, and a chunk that failed for good chunk_failed with its reason', async () => {
    const f = await plannedBatch('expired');
    await admit(f, 4);
    for (let i = 0; i < 3; i++) await runDone(f, i);
    await store.settleChunk(f.spec.id, 3, { outcome: 'failed', reason: 'the backend kept timing out' });
    await store.transition(f.spec.id, ['in_progress'], 'finalizing', { stop: 'expired', finalizing_at: now() });

    const result = await finalizeBatch(f.spec.id, deps());
    expect(result).toMatchObject({ outcome: 'ended', status: 'expired' });
    const errors = await jsonl(f.files.error);
    const failed = linesOfChunks(f, [3]);
    const expired = linesOfChunks(f, [4]);
    expect(errors.map(lineOf)).toEqual([6, ...failed, ...expired]);
    for (const l of errors.filter((e) => failed.includes(lineOf(e)))) {
      expect(l.error).toEqual({ code: 'chunk_failed', message: 'chunk 3 failed: the backend kept timing out' });
    }
    for (const l of errors.filter((e) => expired.includes(lineOf(e)))) expect(l.error!.code).toBe('batch_expired');

    const state = (await store.get(f.spec.id))!;
    expect(state.status).toBe('expired');
    expect(state.timestamps.expired_at).toBeDefined();
    expect(state.counters).toMatchObject({ total: 20, not_run: failed.length + expired.length });
    expect(state.counters.completed + state.counters.failed).toBe(20);
    expect(result.outcome === 'ended' && result.manifest.chunks).toEqual({ total: 5, done: 3, not_run: 1, failed: 1 });
  });

  it('re-runs after a crash past the concat step and produces the same bytes', async () => {
    const f = await plannedBatch('crash');
    await admit(f, 3);
    await runDone(f, 0);
    await runDone(f, 2);
    await store.transition(f.spec.id, ['in_progress'], 'cancelling', { stop: 'cancelled', cancelling_at: now() });
    await store.settleChunk(f.spec.id, 1, { outcome: 'skipped' });

    // The manifest write fails: sources, remainders and both concats are done by then.
    const crashing: Storage = {
      ...storage,
      writeIfAbsent: (uri, body, opts) =>
        uri === f.files.manifest
          ? Promise.reject(new StorageError('unavailable', 'the process died here', { uri }))
          : storage.writeIfAbsent(uri, body, opts),
    };
    const crash = await finalizeBatch(f.spec.id, deps({ storage: crashing })).catch((err: unknown) => err);
    expect(crash).toBeInstanceOf(FinalizeError);
    expect((crash as FinalizeError).step).toBe('manifest');
    const firstOutput = await readFile(new URL(f.files.output));
    const firstErrors = await readFile(new URL(f.files.error));
    expect((await store.get(f.spec.id))!.status).toBe('cancelling');
    expect(await partsLeft(f)).toContain('remainder-00000001.jsonl');

    const result = await finalizeBatch(f.spec.id, deps());
    expect(result).toMatchObject({ outcome: 'ended', status: 'cancelled' });
    expect(await readFile(new URL(f.files.output))).toEqual(firstOutput);
    expect(await readFile(new URL(f.files.error))).toEqual(firstErrors);
    const state = (await store.get(f.spec.id))!;
    expect(state.counters.completed + state.counters.failed).toBe(20);
  });

  it('ends the batch from the manifest alone when a crash came after it (parts already gone)', async () => {
    const f = await plannedBatch('after-manifest');
    await admit(f, 5);
    for (let i = 0; i < 5; i++) await runDone(f, i);
    await store.transition(f.spec.id, ['in_progress'], 'finalizing', { finalizing_at: now() });
    // The Redis transition fails once: the manifest is written, the batch is still finalizing.
    const failingStore = Object.create(store) as BatchStore;
    failingStore.transition = () => Promise.reject(new Error('Redis went away'));
    const crash = await finalizeBatch(f.spec.id, deps({ store: failingStore })).catch((err: unknown) => err);
    expect((crash as FinalizeError).step).toBe('end');
    await rm(new URL(f.files.parts), { recursive: true });

    const result = await finalizeBatch(f.spec.id, deps());
    expect(result).toMatchObject({ outcome: 'ended', status: 'completed' });
    expect((await store.get(f.spec.id))!.counters).toMatchObject({ completed: 19, failed: 1 });
  });
});
