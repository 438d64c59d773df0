/**
 * `npx tsx test/bench/chunk-runner.bench.ts`: lines per second of the bulk
 * chunk runner on ONE core against the in-process ceiling (batch-ceiling.ts),
 * same file, same embedded backend, same micro-batch size, in one process.
 *
 * - Input: BENCH_LINES (default 30,000) `/v1/infer` sentiment lines in a temp
 *   folder, texts taken in turn from the UCI Sentiment Labelled Sentences
 *   (Kotzias et al., KDD 2015, CC BY 4.0; /work/shared/data, or
 *   BENCH_SENTENCES_DIR), each line with a unique custom_id.
 * - Runner: the file is planned with planBatch (1000-line chunks), then every
 *   chunk goes through runChunk one after another (the headline row) with
 *   file:// storage and fresh part names; the timed span covers all chunks
 *   (reads, parse, model, serialisation, part writes), not the plan. A second
 *   row keeps 2 chunks in flight in this one thread, as a bulk lane of
 *   concurrency 2 would: its part writes (each flushed to disk) then overlap
 *   the other chunk's compute.
 * - Ceiling: ceilingLinesPerSecond over the same file with the same backend.
 * - A warm-up pass of each first, then BENCH_REPS (default 3) measured passes
 *   of each, interleaved (runner, ceiling, runner with 2 in flight); the
 *   medians are printed, and the ratios as the median over reps of each
 *   rep's runner / ceiling (paired, so a drifting machine cancels out), by
 *   wall clock and by this process's CPU time. On a shared machine, pin it
 *   (`taskset -c 1 npx tsx …`) and raise BENCH_REPS.
 * - BENCH_BACKEND=echo swaps the model for the echo backend (no model time),
 *   which leaves the runner's own cost per line against the loop's.
 * No Redis, no network. The temp folder is removed at the end.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseConfig } from '../../common/config.ts';
import { chunkJobSchema, partUris, type Chunk, type ChunkJob } from '../../common/contracts/batch.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { createBackend } from '../../gpu-worker/backends/registry.ts';
import type { ModelBackend } from '../../gpu-worker/backends/backend.ts';
import { runChunk, type ChunkRunnerDeps } from '../../gpu-worker/bulk/chunk-runner.ts';
import { DEFAULT_BATCH_SIZE } from '../../gpu-worker/bulk/micro-batch.ts';
import { planBatch } from '../../producer/batch/planner.ts';
import { ceilingLinesPerSecond } from './batch-ceiling.ts';
import { fmtInt, median, table } from './stats.ts';

const positive = (name: string, fallback: number): number => {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isSafeInteger(n) && n > 0 ? n : fallback;
};
const LINES = positive('BENCH_LINES', 30_000);
const REPS = positive('BENCH_REPS', 3);
const BATCH_SIZE = positive('BENCH_BATCH_SIZE', DEFAULT_BATCH_SIZE);
const CHUNK_LINES = 1000;
const SENTENCES_DIR = process.env.BENCH_SENTENCES_DIR ?? '/work/shared/data/sentiment-labelled-sentences';
const MODEL = 'bench';
/** `embedded` (the model) or `echo` (no model: what is left is the runner's and the loop's own cost). */
const BACKEND = process.env.BENCH_BACKEND === 'echo' ? 'echo' : 'embedded';

/** The labelled sentences (text before the tab), any line ending. */
async function sentences(): Promise<string[]> {
  const files = (await readdir(SENTENCES_DIR)).filter((f) => f.endsWith('_labelled.txt')).sort();
  const out: string[] = [];
  for (const f of files) {
    for (const row of (await readFile(join(SENTENCES_DIR, f), 'utf8')).split(/\r\n|\n|\r/)) {
      const text = row.slice(0, row.lastIndexOf('\t')).trim();
      if (text !== '') out.push(text);
    }
  }
  if (out.length === 0) throw new Error(`no sentences under ${SENTENCES_DIR}`);
  return out;
}

async function writeInput(dir: string, texts: readonly string[]): Promise<string> {
  const lines = Array.from({ length: LINES }, (_, i) =>
    JSON.stringify({
      custom_id: `req-${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: texts[i % texts.length] } },
    }),
  );
  const file = join(dir, 'input.jsonl');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

async function plan(inputUri: string): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  const result = await planBatch(
    createFileStorage(),
    inputUri,
    { endpoint: '/v1/infer', model: MODEL, chunkLines: CHUNK_LINES },
    (c) => void chunks.push(c),
  );
  if (result.invalidLines > 0 || result.duplicateLines > 0) throw new Error('the bench input should be all valid');
  return chunks;
}

/**
 * One pass of the runner over every chunk into fresh parts, `inFlight` chunks
 * at a time (1: one after another; 2: what a bulk lane of concurrency 2 does,
 * still one JS thread, so one core: a chunk computes while the other waits on
 * its part writes).
 */
async function runnerPass(
  dir: string,
  pass: string,
  chunks: readonly Chunk[],
  backend: ModelBackend,
  inFlight: number,
): Promise<Pass> {
  const files = createFileStorage();
  let writeSeconds = 0;
  const storage: ChunkRunnerDeps['storage'] = {
    stat: files.stat,
    read: files.read,
    async writeIfAbsent(uri, body, opts) {
      const t = process.hrtime.bigint();
      try {
        return await files.writeIfAbsent(uri, body, opts);
      } finally {
        writeSeconds += Number(process.hrtime.bigint() - t) / 1e9;
      }
    },
  };
  const partsPrefix = pathToFileURL(join(dir, `parts-${pass}`)).href;
  const jobs: ChunkJob[] = chunks.map((chunk) =>
    chunkJobSchema.parse({
      batchId: `bench${pass}`,
      endpoint: '/v1/infer',
      model: MODEL,
      chunk,
      ...partUris(partsPrefix, chunk.index),
    }),
  );
  let lines = 0;
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const r = await runChunk(job, { storage, backend, batchSize: BATCH_SIZE });
      if (r.status !== 'done' || r.failed > 0) throw new Error(`chunk ${job.chunk.index}: ${JSON.stringify(r)}`);
      lines += r.processedLines;
    }
  };
  const cpu = cpuSeconds();
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    linesPerSecond: lines / seconds,
    linesPerCpuSecond: lines / (cpuSeconds() - cpu),
    writeShare: writeSeconds / seconds,
  };
}

async function ceilingPass(file: string, backend: ModelBackend): Promise<Pass> {
  const cpu = cpuSeconds();
  const r = await ceilingLinesPerSecond({ file, backend, batchSize: BATCH_SIZE });
  return { linesPerSecond: r.linesPerSecond, linesPerCpuSecond: r.lines / (cpuSeconds() - cpu), writeShare: 0 };
}

/** This process's CPU time (user + system), seconds. */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface Pass {
  linesPerSecond: number;
  /** Lines per second of this process's CPU time (wall clock less I/O waits such as fsync). */
  linesPerCpuSecond: number;
  /** Time spent in part writes (create-only, flushed to disk) over the pass's wall time. */
  writeShare: number;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'interfleet-chunk-bench-'));
  const config = parseConfig({}, `pools: [{ name: ${MODEL}, backend: ${BACKEND}, defaultMaxTokens: 8 }]`);
  const backend = await createBackend(config.pools[0]!, { concurrency: 1 });
  try {
    const file = await writeInput(dir, await sentences());
    const chunks = await plan(pathToFileURL(file).href);
    console.log(
      `${fmtInt(LINES)} sentiment lines, ${chunks.length} chunks of ${CHUNK_LINES}, micro-batch ${BATCH_SIZE}`,
    );

    await runnerPass(dir, 'warmup', chunks, backend, 1);
    await ceilingPass(file, backend);
    const sequential: Pass[] = [];
    const overlapped: Pass[] = [];
    const ceiling: Pass[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      sequential.push(await runnerPass(dir, `${rep}s`, chunks, backend, 1));
      ceiling.push(await ceilingPass(file, backend));
      overlapped.push(await runnerPass(dir, `${rep}o`, chunks, backend, 2));
    }
    const m = (passes: readonly Pass[], f: (p: Pass) => number) => median(passes.map(f));
    // Each rep's runner passes against that rep's ceiling pass (run between them), so a
    // machine that slows down or speeds up during the bench moves both sides alike.
    const paired = (passes: readonly Pass[], f: (p: Pass) => number) =>
      median(passes.map((p, i) => f(p) / f(ceiling[i]!))).toFixed(3);
    const row = (name: string, passes: readonly Pass[]) => [
      name,
      fmtInt(m(passes, (p) => p.linesPerSecond)),
      fmtInt(m(passes, (p) => p.linesPerCpuSecond)),
      paired(passes, (p) => p.linesPerSecond),
      paired(passes, (p) => p.linesPerCpuSecond),
      passes === sequential ? `${(100 * m(passes, (p) => p.writeShare)).toFixed(0)}%` : '-',
      passes.map((p) => fmtInt(p.linesPerSecond)).join(' '),
    ];
    console.log(
      table(
        ['', 'lines/s', 'lines/CPU-s', 'ratio', 'ratio CPU', 'in writes', 'lines/s of each run'],
        [
          row('runner, 1 chunk at a time', sequential),
          row('runner, 2 chunks in flight', overlapped),
          row('ceiling (in-process loop)', ceiling),
        ],
      ),
    );
    console.log(
      `medians of ${REPS} reps (after a warm-up pass); ratio: median over reps of runner / ceiling ` +
        `lines/s of the same rep; ratio CPU: the same per CPU-second of this process; ` +
        `in writes: share of the wall time spent in part writes`,
    );
  } finally {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
