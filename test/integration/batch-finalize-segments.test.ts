/**
 * Finalisation of chunks that yielded (chunk preemption): against a real Redis
 * and file:// storage, a chunk's recorded segments are merged in order before
 * its last part; a chunk stopped after a segment keeps it and only the rest
 * becomes remainder lines; parts nobody recorded (a superseded run's) are
 * never merged. Every request lands exactly once, and the counts are exact.
 */
import { batchSpec } from '../helpers/batch-spec.ts';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, batchFiles, type BatchSpec, chunkJobFor } from '../../common/batch/batch-state.ts';
import { readPlan } from '../../common/batch/plan-file.ts';
import { partUris, type Chunk, type ChunkJob } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { runChunk } from '../../gpu-worker/bulk/chunk-runner.ts';
import { afterSegment, plannedRange } from '../../gpu-worker/bulk/segments.ts';
import { finalizeBatch } from '../../producer/batch/finalizer.ts';
import { manifestSchema } from '../../producer/batch/manifest.ts';
import { runPlanJob } from '../../producer/batch/plan-job.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

const prefix = testConfig().redis.prefix;
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
  dir = await mkdtemp(join(tmpdir(), 'interfleet-finalize-seg-'));
});
afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

const sentiment = (id: string): string =>
  JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/infer', body: { input: { task: 'sentiment', text: id } } });

/** 24 requests (r-6 is invalid JSON) and two blank lines, planned 6 requests per chunk into 4 chunks. */
function inputLines(): string[] {
  const lines = Array.from({ length: 24 }, (_, i) => sentiment(`r-${i + 1}`));
  lines[5] = '{not json';
  lines.splice(8, 0, '  ');
  lines.splice(15, 0, '');
  return lines;
}

interface Fixture {
  spec: BatchSpec;
  chunks: Chunk[];
  files: ReturnType<typeof batchFiles>;
}

async function plannedBatch(name: string): Promise<Fixture> {
  const inputPath = join(dir, `${name}.jsonl`);
  await writeFile(inputPath, `${inputLines().join('\n')}\n`);
  const created = now();
  const spec = batchSpec(created, {
    model: 'default',
    input: pathToFileURL(inputPath).href,
    outputPrefix: `${pathToFileURL(join(dir, name)).href}/`,
    tenant: 'default',
  });
  await store.create(spec);
  const planned = await runPlanJob(
    spec.id,
    { batch: { chunkLines: 6, chunkBytes: 1 << 20 }, store, storage, logger, now },
    { lastAttempt: true },
  );
  expect(planned).toEqual({ outcome: 'planned', total: 24, chunks: 4 });
  const files = batchFiles(spec.outputPrefix);
  const chunks: Chunk[] = [];
  for await (const c of readPlan(storage, files.plan)) chunks.push(c);
  await store.setFields(spec.id, { cursor: 4, admitted: 4 });
  return { spec, chunks, files };
}

function jobOf(f: Fixture, index: number): ChunkJob {
  return chunkJobFor(f.spec, f.chunks[index]!);
}

/** What a bulk lane does for a run that yields after `after` finished lines: the segment, recorded. */
async function runYielding(job: ChunkJob, after: number): Promise<ChunkJob> {
  const ac = new AbortController();
  const result = await runChunk(job, {
    storage,
    backend: createEchoBackend(),
    batchSize: 1,
    signal: ac.signal,
    onProgress: (n) => {
      if (n === after) ac.abort(new Error('preempted'));
    },
  });
  expect(result.status).toBe('yielded');
  const segment = result.segment!;
  expect(await store.recordSegment(job.batchId, job.chunk.index, plannedRange(job).start, segment)).toBe('recorded');
  return afterSegment(job, segment);
}

/** What a bulk lane does for a run that finishes: its last part, settled from where it started. */
async function runDone(job: ChunkJob): Promise<void> {
  const result = await runChunk(job, { storage, backend: createEchoBackend() });
  const settled = await store.settleLastPart(
    job.batchId,
    job.chunk.index,
    plannedRange(job).start,
    job.chunk.start,
    result,
  );
  expect(settled).toBe('settled');
}

interface Line {
  id: string;
  custom_id: string | null;
  error: { code: string } | null;
}

async function jsonl(uri: string): Promise<Line[]> {
  const text = await readFile(new URL(uri), 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

const lineOf = (l: Line): number => Number(l.id.slice(l.id.lastIndexOf('_') + 1));

/** The 1-based numbers of the input's non-blank lines. */
const requestLines = (): number[] =>
  inputLines()
    .map((t, i) => (t.trim() === '' ? 0 : i + 1))
    .filter((n) => n > 0);

describe('finalize with segments', () => {
  it('merges each chunk as its segments in order then its last part: every request once, exact counts', async () => {
    const f = await plannedBatch('completed');
    await runDone(jobOf(f, 0));
    // Chunk 1 yields once; chunk 2 twice (after 1 line, then after 3 more).
    await runDone(await runYielding(jobOf(f, 1), 2));
    await runDone(await runYielding(await runYielding(jobOf(f, 2), 1), 3));
    await runDone(jobOf(f, 3));
    // A superseded run's whole-chunk part of chunk 1 and an unrecorded segment must never be merged.
    await writeFile(new URL(partUris(f.files.parts, 1).outputPart), `${sentiment('ghost')}\n`);
    await writeFile(new URL(`${f.files.parts}output-00000002-0-1.jsonl`), `${sentiment('ghost2')}\n`);
    expect((await store.chunkSegments(f.spec.id, 2)).map((s) => s.lines)).toEqual([1, 3]);
    await store.transition(f.spec.id, ['in_progress'], 'finalizing', { finalizing_at: now() });

    const result = await finalizeBatch(f.spec.id, { store, storage, logger, now });
    expect(result.outcome).toBe('ended');
    const output = await jsonl(f.files.output);
    const errors = await jsonl(f.files.error);
    // Input order within each file, each request exactly once across both.
    expect(output.map(lineOf)).toEqual([...output.map(lineOf)].sort((a, b) => a - b));
    expect(errors.map((e) => [lineOf(e), e.error?.code])).toEqual([[6, 'invalid_json']]);
    expect([...output, ...errors].map(lineOf).sort((a, b) => a - b)).toEqual(requestLines());
    expect(output.map((l) => l.custom_id)).not.toContain('ghost');
    const manifest = manifestSchema.parse(JSON.parse(await readFile(new URL(f.files.manifest), 'utf8')));
    expect(manifest).toMatchObject({
      status: 'completed',
      request_counts: { total: 24, completed: 23, failed: 1 },
      not_run: 0,
      chunks: { total: 4, done: 4, not_run: 0, failed: 0 },
    });
    expect((await store.get(f.spec.id))?.counters).toMatchObject({ completed: 23, failed: 1, settled: 4 });
  });

  it('keeps the segment of a chunk stopped after yielding; only its rest is reported as not run', async () => {
    const f = await plannedBatch('cancelled');
    await runDone(jobOf(f, 0));
    const rest = await runYielding(jobOf(f, 1), 4);
    // Cancelled while chunk 1 waited to resume: it and the two never started are skipped.
    await store.transition(f.spec.id, ['in_progress'], 'cancelling', { stop: 'cancelled', cancelling_at: now() });
    for (const i of [1, 2, 3]) await store.settleChunk(f.spec.id, i, { outcome: 'skipped' });
    // A late run of the rest, or a record after settling, changes nothing.
    expect(await store.recordSegment(f.spec.id, 1, f.chunks[1]!.start, { ...rest.segments![0]! })).toBe('settled');

    const result = await finalizeBatch(f.spec.id, { store, storage, logger, now });
    expect(result).toMatchObject({ outcome: 'ended', status: 'cancelled' });
    const output = await jsonl(f.files.output);
    const errors = await jsonl(f.files.error);
    const chunk1 = requestLines().filter((n) => n >= f.chunks[1]!.firstLine && n < f.chunks[2]!.firstLine);
    // Chunk 0's requests, then the 4 chunk 1 finished before yielding.
    expect(output.map(lineOf)).toEqual(
      requestLines()
        .filter((n) => n < f.chunks[1]!.firstLine && n !== 6)
        .concat(chunk1.slice(0, 4)),
    );
    const notRun = errors.filter((e) => e.error?.code === 'batch_cancelled').map(lineOf);
    expect(notRun).toEqual(requestLines().filter((n) => n >= rest.chunk.firstLine));
    expect([...output, ...errors].map(lineOf).sort((a, b) => a - b)).toEqual(requestLines());
    expect(rest.chunk.lines).toBe(2);
    const manifest = manifestSchema.parse(JSON.parse(await readFile(new URL(f.files.manifest), 'utf8')));
    expect(manifest).toMatchObject({
      status: 'cancelled',
      request_counts: { total: 24, completed: 9, failed: 15 },
      not_run: 14,
      chunks: { total: 4, done: 1, not_run: 3, failed: 0 },
    });
  });
});
