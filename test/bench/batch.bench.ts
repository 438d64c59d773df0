/**
 * `npm run bench:batch`: a generated JSONL batch through the embedded
 * `sentiment` task, end to end through the real fleet, against the in-process
 * ceiling measured in the same run.
 *
 * - Fleet: a private redis-server (fresh, so its `used_memory` is the batch's
 *   alone), the producer and the scheduler each in a child process, and
 *   BENCH_WORKERS (2) gpu-worker child processes (embedded backend, one bulk
 *   chunk at a time each). The batch is submitted over HTTP (POST /v1/batches)
 *   and polled until it ends; lines/s is total lines over the time from
 *   submission to `completed` (planning and finalisation included).
 * - Memory: each child's peak RSS is its VmHWM from /proc; Redis peak is the
 *   highest `used_memory` sampled every 100 ms and its own `used_memory_peak`.
 * - Ceiling: `ceilingLinesPerSecond` (test/bench/batch-ceiling.ts), the same
 *   model over the same file in one in-process loop on one core.
 *   Ratio per worker core = fleet lines/s ÷ workers ÷ ceiling lines/s.
 *
 * Sizes: BENCH_SIZES (default 100000,1000000) lines; BENCH_REPS (1) runs per
 * size, BENCH_CEILING_REPS (3) for the ceiling (medians printed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { ceilingLinesPerSecond } from './batch-ceiling.ts';
import { Child } from './children.ts';
import { median, table } from './stats.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const SIZES = (process.env.BENCH_SIZES ?? '100000,1000000').split(',').map(Number);
const WORKERS = Number(process.env.BENCH_WORKERS ?? '2');
const REPS = Number(process.env.BENCH_REPS ?? '1');
const CEILING_REPS = Number(process.env.BENCH_CEILING_REPS ?? '3');
const CHUNK_LINES = Number(process.env.BENCH_CHUNK_LINES ?? '2000');
const RUN_MAX_MS = 10 * 60_000;

function sentences(): string[] {
  const dir = path.resolve(root, '../shared/data/sentiment-labelled-sentences');
  const out: string[] = [];
  for (const f of ['amazon_cells_labelled.txt', 'imdb_labelled.txt', 'yelp_labelled.txt']) {
    for (const line of readFileSync(path.join(dir, f), 'utf8').split(/\r?\n|\r/)) {
      const text = line.split('\t')[0]?.trim();
      if (text) out.push(text);
    }
  }
  return out;
}

async function writeInput(file: string, lines: number): Promise<void> {
  const texts = sentences();
  const out = createWriteStream(file);
  let buf = '';
  for (let i = 0; i < lines; i++) {
    const body = { input: { task: 'sentiment', text: texts[i % texts.length] } };
    buf += `${JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/infer', body })}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  srv.close();
  return port;
}

async function startRedis(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 50 });
  for (let i = 0; i < 100; i++) {
    try {
      await probe.connect();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await probe.ping();
  probe.disconnect();
  return { url, proc };
}

/** Peak resident set (VmHWM) of a live process, in MiB. */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 'NaN');
  return kb / 1024;
}

interface RunResult {
  lines: number;
  seconds: number;
  linesPerSecond: number;
  producerMiB: number;
  schedulerMiB: number;
  workerMiB: number[];
  redisPeakMiB: number;
  redisPeakSampledMiB: number;
  completed: number;
  failed: number;
  status: string;
}

async function runFleet(inputUri: string, lines: number, tmp: string): Promise<RunResult> {
  const redis = await startRedis(tmp);
  const env = {
    REDIS_URL: redis.url,
    INTERFLEET_PREFIX: 'bench',
    LOG_LEVEL: 'warn',
    WORKER_METRICS_PORT: '-1',
    INTERFLEET_BATCH_CHUNK_LINES: String(CHUNK_LINES),
    INTERFLEET_BATCH_WINDOW: String(WORKERS * 4),
  };
  const children: Child[] = [];
  const admin = new Redis(redis.url);
  try {
    const producer = Child.start('producer', path.join(here, 'batch-role.child.ts'), {
      ...env,
      BENCH_ROLE: 'producer',
    });
    children.push(producer);
    const scheduler = Child.start('scheduler', path.join(here, 'batch-role.child.ts'), {
      ...env,
      BENCH_ROLE: 'scheduler',
    });
    children.push(scheduler);
    const workers = Array.from({ length: WORKERS }, (_, i) =>
      Child.start(`worker-${i}`, path.join(root, 'gpu-worker/main.ts'), env, 60_000),
    );
    children.push(...workers);
    const url = String((await producer.ready).url);
    await scheduler.ready;
    await Promise.all(workers.map((w) => w.ready));

    let redisPeak = 0;
    const sampler = setInterval(() => {
      void admin.info('memory').then((info) => {
        const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
        redisPeak = Math.max(redisPeak, used);
      });
    }, 100);

    const t0 = performance.now();
    const res = await fetch(`${url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input_file: inputUri, endpoint: '/v1/infer', model: 'default' }),
    });
    if (!res.ok) throw new Error(`POST /v1/batches: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    let batch: { status: string; request_counts: { total: number; completed: number; failed: number } };
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      batch = (await (await fetch(`${url}/v1/batches/${id}`)).json()) as typeof batch;
      if (['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) break;
      if (performance.now() - t0 > RUN_MAX_MS)
        throw new Error(`batch ${id} still ${batch.status} after ${RUN_MAX_MS} ms`);
    }
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const info = await admin.info('memory');
    const result: RunResult = {
      lines,
      seconds,
      linesPerSecond: lines / seconds,
      producerMiB: peakRssMiB(producer.proc.pid!),
      schedulerMiB: peakRssMiB(scheduler.proc.pid!),
      workerMiB: workers.map((w) => peakRssMiB(w.proc.pid!)),
      redisPeakMiB: Number(/used_memory_peak:(\d+)/.exec(info)?.[1] ?? 0) / 2 ** 20,
      redisPeakSampledMiB: redisPeak / 2 ** 20,
      completed: batch.request_counts.completed,
      failed: batch.request_counts.failed,
      status: batch.status,
    };
    return result;
  } finally {
    await Promise.all(children.map((c) => c.stop(5000)));
    admin.disconnect();
    redis.proc.kill('SIGTERM');
    await once(redis.proc, 'exit');
  }
}

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function main(): Promise<void> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'interfleet-bench-batch-'));
  try {
    console.log(
      `bench:batch — ${os.cpus().length} cores, ${WORKERS} workers, chunks of ${CHUNK_LINES} lines, node ${process.version}`,
    );
    const rows: string[][] = [];
    let ceilingMedian = 0;
    for (const size of SIZES) {
      const file = path.join(tmp, `input-${size}.jsonl`);
      await writeInput(file, size);
      if (ceilingMedian === 0) {
        const runs: number[] = [];
        for (let i = 0; i < CEILING_REPS; i++) runs.push((await ceilingLinesPerSecond({ file })).linesPerSecond);
        ceilingMedian = median(runs);
        console.log(
          `ceiling (in-process loop, 1 core, ${fmt(size)} lines): ${runs.map((r) => fmt(r)).join(', ')} lines/s → median ${fmt(ceilingMedian)}`,
        );
      }
      for (let rep = 0; rep < REPS; rep++) {
        const r = await runFleet(pathToFileURL(file).href, size, tmp);
        const perCore = r.linesPerSecond / WORKERS / ceilingMedian;
        rows.push([
          fmt(size),
          r.status,
          fmt(r.completed),
          fmt(r.failed),
          fmt(r.seconds, 1),
          fmt(r.linesPerSecond),
          fmt(perCore * 100, 1) + ' %',
          fmt(r.producerMiB, 1),
          fmt(r.schedulerMiB, 1),
          r.workerMiB.map((m) => fmt(m, 1)).join(' / '),
          `${fmt(r.redisPeakSampledMiB, 2)} (${fmt(r.redisPeakMiB, 2)})`,
        ]);
        console.log(`  ${fmt(size)} lines: ${r.status} in ${fmt(r.seconds, 1)} s`);
      }
    }
    console.log('');
    console.log(
      table(
        [
          'lines',
          'status',
          'completed',
          'failed',
          'seconds',
          'lines/s',
          'of ceiling per worker',
          'producer peak RSS MiB',
          'scheduler MiB',
          'worker MiB',
          'Redis used_memory peak MiB (server peak)',
        ],
        rows,
      ),
    );
    console.log(`\nceiling: ${fmt(ceilingMedian)} lines/s on one core (median of ${CEILING_REPS})`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
