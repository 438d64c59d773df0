/**
 * `npm run bench:batch`: a generated JSONL batch through the embedded
 * `sentiment` task, end to end through the real fleet, against the in-process
 * ceiling measured in the same run.
 *
 * - Fleet: a private redis-server (fresh, so its `used_memory` is the batch's
 *   alone), the producer and the scheduler each in a child process, and
 *   BENCH_WORKERS gpu-worker child processes (embedded backend). The batch is
 *   submitted over HTTP (POST /v1/batches) and polled every 50 ms until it
 *   ends; lines/s is total lines over the time from submission to `completed`
 *   (planning and finalisation included); the time in each status is printed
 *   too, and lines over the in_progress time alone (the steady rate, without
 *   planning and finalisation).
 * - Cores (BENCH_PIN, default on): with N cores, every worker gets a core of
 *   its own (cores 1..N-1, so at most N-1 workers) and everything else —
 *   Redis, producer, scheduler, this process — shares core 0 (taskset on
 *   every thread). BENCH_WORKERS defaults to N-1. BENCH_PIN=0 leaves the OS
 *   to place everything; then "per worker core" is a fiction on a small
 *   machine and the printout says so.
 * - Config: the product's defaults, except what BENCH_CHUNK_LINES
 *   (batch.chunkLines), BENCH_ADMIT_MS (batch.admitEveryMs), BENCH_WINDOW
 *   (batch.windowPerPool) and BENCH_BULK_CONCURRENCY (the pool's
 *   lanes.bulk.concurrency) override, through a config file
 *   (INTERFLEET_CONFIG) every child reads. The effective values are printed.
 * - Producer: run as production runs it (BENCH_PRODUCER=bundle, the default):
 *   bin/build's bundle through bin/start, i.e. plain node with the producer's
 *   V8 flags, no tsx, as the image's entry point does. BENCH_PRODUCER=tsx runs
 *   it as before (tsx, startProducer in a child), bundle-noflags the bundle
 *   without the flags.
 * - Memory: each child's peak RSS is its VmHWM from /proc; the producer's RSS
 *   is also sampled every 100 ms, to tell its peak in each batch status;
 *   Redis peak is the highest `used_memory` sampled every 100 ms and its own
 *   `used_memory_peak`.
 * - CPU: each child's user+system seconds (/proc/<pid>/stat) and Redis's
 *   (INFO cpu) from submission to completion; a worker's busy share is its
 *   CPU seconds over the wall time (1.0 = its core never idle). "Off the main
 *   thread" is the share of a worker's CPU in its other threads (V8's garbage
 *   collection helpers, libuv's file I/O pool), which a CPU profile of the
 *   main thread does not show (/proc/<pid>/task/<pid>/stat is the main thread).
 * - Ceiling: the same model (the pool's embedded backend) over the same file
 *   in one in-process loop (batch-ceiling.ts) on the workers' first core,
 *   WARM: one backend, an untimed 20,000-line warm-up pass, then one timed
 *   pass before each fleet run and one after it; that rep's ceiling is
 *   their mean (lines over the two passes' time), so drift hits both sides.
 *   Ratio per worker core = fleet lines/s ÷ workers ÷ that rep's ceiling; the
 *   summary gives medians over reps. CPU efficiency = worker lines per
 *   CPU-second ÷ the ceiling's lines per CPU-second: the fleet's own cost per
 *   line, blind to idle time and to other load on the machine.
 *
 * - Warm-up: before each timed batch the fleet runs an untimed batch of
 *   BENCH_FLEET_WARMUP (20,000) lines, as the ceiling runs an untimed pass:
 *   both sides are measured warm (0 measures a fresh fleet).
 *
 * Sizes: BENCH_SIZES (default 100000,1000000) lines; BENCH_REPS (1) runs per
 * size.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { startPrivateRedis } from '../../launcher/local-redis.ts';
import { stringify as toYaml } from 'yaml';
import { parseConfig } from '../../common/config.ts';
import { createCeiling } from './batch-ceiling.ts';
import { Child } from './children.ts';
import { mainThreadCpuSeconds, procCpuSeconds, redisCpuSeconds } from './cpu.ts';
import { buildBundles, producerMode, ProducerProcess, rssMiB, submitBatch } from './producer-process.ts';
import { median, table } from './stats.ts';
import { testFileRootsEnv } from '../helpers/file-roots.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const CORES = os.availableParallelism();
const PIN = process.env.BENCH_PIN !== '0' && CORES >= 2;
const SIZES = (process.env.BENCH_SIZES ?? '100000,1000000').split(',').map(Number);
const WORKERS = Number(process.env.BENCH_WORKERS ?? String(Math.max(1, CORES - 1)));
const REPS = Number(process.env.BENCH_REPS ?? '1');
const RUN_MAX_MS = 15 * 60_000;
/** Lines of the fleet's untimed warm-up batch before each timed one (0: none); the ceiling's is 20,000. */
const FLEET_WARMUP = Number(process.env.BENCH_FLEET_WARMUP ?? '20000');
const PRODUCER = producerMode(process.env.BENCH_PRODUCER);
/** How workers run: `bundle` (default) as production runs them (bin/build's bundle, plain node), or `tsx` from source. */
const WORKER_MODE = process.env.BENCH_WORKER === 'tsx' ? 'tsx' : 'bundle';
/** Extra node flags for the workers (space-separated), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
const WORKER_NODE_ARGS = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
if (PIN && WORKERS > CORES - 1)
  throw new Error(`BENCH_PIN: ${WORKERS} workers need ${WORKERS + 1} cores, have ${CORES}`);

/** Core 0 for everything but the workers; worker i on core i+1. */
const SHARED_CORE = '0';
const workerCore = (i: number): string => String(1 + i);

/** Binds every thread of `pid` (and threads it starts later) to `cpus`. */
function pin(pid: number, cpus: string): void {
  if (PIN) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

/** The config file every child reads: only the keys the bench overrides. */
function benchConfigYaml(): string {
  const batch: Record<string, number> = {};
  const num = (name: string): number | undefined => (process.env[name] ? Number(process.env[name]) : undefined);
  if (num('BENCH_CHUNK_LINES') !== undefined) batch.chunkLines = num('BENCH_CHUNK_LINES')!;
  if (num('BENCH_ADMIT_MS') !== undefined) batch.admitEveryMs = num('BENCH_ADMIT_MS')!;
  if (num('BENCH_WINDOW') !== undefined) batch.windowPerPool = num('BENCH_WINDOW')!;
  const bulk = num('BENCH_BULK_CONCURRENCY');
  const pool = { name: 'default', ...(bulk === undefined ? {} : { lanes: { bulk: { concurrency: bulk } } }) };
  return toYaml({ batch, pools: [pool] });
}

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

interface RunResult {
  seconds: number;
  linesPerSecond: number;
  /** Seconds in each batch status seen by the poller (validating = planning). */
  phases: Record<string, number>;
  producerMiB: number;
  /** The producer's resident set when ready, before the batch (runtime, modules, HTTP server). */
  producerIdleMiB: number;
  /** The producer's highest sampled RSS in each batch status. */
  producerPhaseMiB: Record<string, number>;
  schedulerMiB: number;
  workerMiB: number[];
  redisPeakMiB: number;
  redisPeakSampledMiB: number;
  /** CPU seconds from submission to completion. */
  /** CPU seconds of each party over the run; `workersMain`: each worker's main thread alone. */
  cpu: { producer: number; scheduler: number; workers: number[]; workersMain: number[]; redis: number };
  completed: number;
  failed: number;
  status: string;
}

type BatchView = { status: string; request_counts: { total: number; completed: number; failed: number } };

/** Submits a batch and polls it to a final status (the fleet's untimed warm-up). */
async function runUntimed(url: string, inputUri: string): Promise<void> {
  const id = await submitBatch(url, inputUri);
  const t0 = performance.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    const b = (await (await fetch(`${url}/v1/batches/${id}`)).json()) as BatchView;
    if (b.status === 'completed') return;
    if (['failed', 'expired', 'cancelled'].includes(b.status)) throw new Error(`warm-up batch ${id} ${b.status}`);
    if (performance.now() - t0 > RUN_MAX_MS) throw new Error(`warm-up batch ${id} still ${b.status}`);
  }
}

async function runFleet(
  inputUri: string,
  lines: number,
  configFile: string,
  warmUpUri: string | undefined,
): Promise<RunResult> {
  const redis = await startPrivateRedis();
  pin(redis.pid, SHARED_CORE);
  const env = {
    REDIS_URL: redis.url,
    INTERFLEET_CONFIG: configFile,
    ...testFileRootsEnv,
    INTERFLEET_PREFIX: 'bench',
    LOG_LEVEL: 'warn',
    WORKER_METRICS_PORT: '-1',
    SCHEDULER_METRICS_PORT: '-1',
  };
  const children: { stop(graceMs: number): Promise<void> }[] = [];
  const admin = new Redis(redis.url);
  admin.on('error', () => undefined);
  try {
    const role = (name: string) =>
      Child.start(name, path.join(here, 'batch-role.child.ts'), { ...env, BENCH_ROLE: name }, 120_000);
    const scheduler = role('scheduler');
    const workers = Array.from({ length: WORKERS }, (_, i) =>
      WORKER_MODE === 'bundle'
        ? Child.start(`worker-${i}`, path.join(root, 'dist/gpu-worker/main.js'), env, 120_000, WORKER_NODE_ARGS, false)
        : Child.start(`worker-${i}`, path.join(root, 'gpu-worker/main.ts'), env, 120_000, WORKER_NODE_ARGS),
    );
    children.push(scheduler, ...workers);
    pin(scheduler.proc.pid!, SHARED_CORE);
    workers.forEach((w, i) => pin(w.proc.pid!, workerCore(i)));
    let url: string;
    let producerPid: number;
    if (PRODUCER === 'tsx') {
      const producer = role('producer');
      children.push(producer);
      pin(producer.proc.pid!, SHARED_CORE);
      url = String((await producer.ready).url);
      producerPid = producer.proc.pid!;
    } else {
      const producer = await ProducerProcess.start(PRODUCER, env);
      children.push(producer);
      pin(producer.pid, SHARED_CORE);
      url = producer.url;
      producerPid = producer.pid;
    }
    await scheduler.ready;
    await Promise.all(workers.map((w) => w.ready));

    let redisPeak = 0;
    const producerPhaseMiB: Record<string, number> = {};
    let status = 'validating';
    // Planning may go on after the batch is in_progress (plan pieces): until the total is known, it is "planning".
    let memPhase = 'planning';
    const sampler = setInterval(() => {
      try {
        producerPhaseMiB[memPhase] = Math.max(producerPhaseMiB[memPhase] ?? 0, rssMiB(producerPid, 'VmRSS'));
      } catch {
        // exited
      }
      void admin
        .info('memory')
        .then((info) => {
          redisPeak = Math.max(redisPeak, Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0));
        })
        .catch(() => undefined);
    }, 100);

    const cpuOf = async () => ({
      producer: await procCpuSeconds(producerPid),
      scheduler: await procCpuSeconds(scheduler.proc.pid),
      workers: await Promise.all(workers.map((w) => procCpuSeconds(w.proc.pid))),
      workersMain: await Promise.all(workers.map((w) => mainThreadCpuSeconds(w.proc.pid))),
      redis: await redisCpuSeconds(admin),
    });
    const producerIdleMiB = rssMiB(producerPid, 'VmRSS');
    // Warm like the ceiling (an untimed pass of the same lines first): a production worker is
    // long-lived, and a fresh one runs its first lines slower (BENCH_FLEET_WARMUP=0 measures it cold).
    if (warmUpUri !== undefined) await runUntimed(url, warmUpUri);
    const cpu0 = await cpuOf();
    const t0 = performance.now();
    const id = await submitBatch(url, inputUri);
    const phases: Record<string, number> = {};
    let batch: BatchView;
    let at = t0;
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      batch = (await (await fetch(`${url}/v1/batches/${id}`)).json()) as BatchView;
      const now = performance.now();
      phases[status] = (phases[status] ?? 0) + (now - at) / 1000;
      at = now;
      status = batch.status;
      memPhase =
        batch.request_counts.total === 0 && ['validating', 'in_progress'].includes(status) ? 'planning' : status;
      if (['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) break;
      if (now - t0 > RUN_MAX_MS) throw new Error(`batch ${id} still ${batch.status} after ${RUN_MAX_MS} ms`);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = await cpuOf();
    clearInterval(sampler);
    const info = await admin.info('memory');
    return {
      seconds,
      linesPerSecond: lines / seconds,
      phases,
      producerMiB: rssMiB(producerPid),
      producerIdleMiB,
      producerPhaseMiB,
      schedulerMiB: rssMiB(scheduler.proc.pid!),
      workerMiB: workers.map((w) => rssMiB(w.proc.pid!)),
      redisPeakMiB: Number(/used_memory_peak:(\d+)/.exec(info)?.[1] ?? 0) / 2 ** 20,
      redisPeakSampledMiB: redisPeak / 2 ** 20,
      cpu: {
        producer: cpu1.producer - cpu0.producer,
        scheduler: cpu1.scheduler - cpu0.scheduler,
        workers: cpu1.workers.map((c, i) => c - cpu0.workers[i]!),
        workersMain: cpu1.workersMain.map((c, i) => c - cpu0.workersMain[i]!),
        redis: cpu1.redis - cpu0.redis,
      },
      completed: batch.request_counts.completed,
      failed: batch.request_counts.failed,
      status: batch.status,
    };
  } finally {
    await Promise.all(children.map((c) => c.stop(5000)));
    admin.disconnect();
    await redis.stop();
  }
}

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const pct = (x: number) => `${fmt(x * 100, 1)} %`;

interface Rep {
  size: number;
  ceiling: number;
  /** The ceiling's lines per CPU-second of the bench process. */
  ceilingPerCpuS: number;
  run: RunResult;
  perCore: number;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'interfleet-bench-batch-'));
  const configFile = path.join(tmp, 'interfleet.yaml');
  writeFileSync(configFile, benchConfigYaml());
  const config = parseConfig({}, readFileSync(configFile, 'utf8'));
  const pool = config.pools[0]!;
  const model = `${os.cpus()[0]?.model ?? '?'}`.trim();
  console.log(`bench:batch — ${CORES} cores (${model}), node ${process.version}, ${new Date().toISOString()}`);
  console.log(
    PIN
      ? `cores: worker i on core i+1 (${WORKERS} worker(s), one core each); Redis, producer, scheduler and this process share core 0; the ceiling runs on core 1`
      : `cores: NOT pinned — ${WORKERS} worker(s), producer, scheduler, Redis and this process share ${CORES} cores`,
  );
  console.log(
    PRODUCER === 'tsx'
      ? 'producer: producer/main.ts through tsx (as the image ran it before the bundles)'
      : `producer: as production runs it: bin/start dist/producer/main.js (bin/build's bundle, plain node${PRODUCER === 'bundle' ? ", the producer's V8 flags" : ', no V8 flags'})`,
  );
  console.log(
    WORKER_MODE === 'bundle'
      ? `workers: as production runs them: dist/gpu-worker/main.js (bin/build's bundle, plain node${WORKER_NODE_ARGS.length ? `, ${WORKER_NODE_ARGS.join(' ')}` : ''})`
      : `workers: gpu-worker/main.ts through tsx${WORKER_NODE_ARGS.length ? ` with ${WORKER_NODE_ARGS.join(' ')}` : ''}`,
  );
  if (PRODUCER !== 'tsx' || WORKER_MODE === 'bundle') buildBundles();
  console.log(
    `config: batch.chunkLines ${config.batch.chunkLines}, batch.admitEveryMs ${config.batch.admitEveryMs}, ` +
      `batch.windowPerPool ${config.batch.windowPerPool} (until the balance pass sets 2 × budget), ` +
      `bulk concurrency ${pool.lanes.bulk.concurrency}/worker, micro-batch ${pool.lanes.bulk.batchSize}; fleet warm-up ${FLEET_WARMUP} lines untimed before each run; sizes ${SIZES.join(', ')}, ${REPS} rep(s) each`,
  );
  const reps: Rep[] = [];
  let warmUpUri: string | undefined;
  if (FLEET_WARMUP > 0) {
    const warmFile = path.join(tmp, 'warm-up.jsonl');
    await writeInput(warmFile, FLEET_WARMUP);
    warmUpUri = pathToFileURL(warmFile).href;
  }
  let ceiling: Awaited<ReturnType<typeof createCeiling>> | undefined;
  try {
    for (const size of SIZES) {
      const file = path.join(tmp, `input-${size}.jsonl`);
      await writeInput(file, size);
      if (ceiling === undefined) {
        pin(process.pid, workerCore(0));
        ceiling = await createCeiling({ warmUpFile: file, pool, batchSize: pool.lanes.bulk.batchSize });
        pin(process.pid, SHARED_CORE);
      }
      const measureCeiling = async () => {
        pin(process.pid, workerCore(0));
        const cr = await ceiling!.measure(file);
        pin(process.pid, SHARED_CORE);
        return cr;
      };
      for (let rep = 0; rep < REPS; rep++) {
        // Bracketed: one pass before the fleet run and one after, averaged, so that the machine's
        // drift during the run hits both sides (each rep prints both passes; on this VM they differed by
        // up to 20 %).
        const before = await measureCeiling();
        const run = await runFleet(pathToFileURL(file).href, size, configFile, warmUpUri);
        const after = await measureCeiling();
        const c = (2 * size) / (before.seconds + after.seconds);
        const perCore = run.linesPerSecond / WORKERS / c;
        const ceilingPerCpuS = (2 * size) / (before.cpuSeconds + after.cpuSeconds);
        reps.push({ size, ceiling: c, ceilingPerCpuS, run, perCore });
        const ph = Object.entries(run.phases)
          .map(([s, t]) => `${s} ${fmt(t, 2)} s`)
          .join(', ');
        const mem = Object.entries(run.producerPhaseMiB)
          .map(([s, m]) => `${s} ${fmt(m, 1)}`)
          .join(', ');
        console.log(
          `  ${fmt(size)} lines rep ${rep + 1}: ceiling ${fmt(c)} lines/s (warm; ${fmt(before.linesPerSecond)} before, ${fmt(after.linesPerSecond)} after); fleet ${run.status} in ${fmt(run.seconds, 2)} s = ${fmt(run.linesPerSecond)} lines/s → ${pct(perCore)} per worker core [${ph}]; producer RSS MiB: idle ${fmt(run.producerIdleMiB, 1)}, highest sampled while ${mem}, peak ${fmt(run.producerMiB, 1)}`,
        );
      }
    }
  } finally {
    await ceiling?.close();
    rmSync(tmp, { recursive: true, force: true });
  }

  console.log('\n== each run ==');
  console.log(
    table(
      [
        'lines',
        'status',
        'done/failed',
        'seconds',
        'planning s',
        'fleet lines/s',
        'in_progress lines/s',
        'ceiling lines/s',
        'per worker core',
        'worker busy',
        'producer MiB (idle)',
        'scheduler MiB',
        'worker MiB',
        'Redis peak MiB (server)',
        'CPU s prod/sched/redis',
      ],
      reps.map(({ size, ceiling: c, run: r, perCore }) => [
        fmt(size),
        r.status,
        `${fmt(r.completed)}/${fmt(r.failed)}`,
        fmt(r.seconds, 2),
        fmt(r.phases.validating ?? 0, 2),
        fmt(r.linesPerSecond),
        fmt(size / (r.phases.in_progress ?? Number.NaN)),
        fmt(c),
        pct(perCore),
        r.cpu.workers.map((w) => pct(w / r.seconds)).join(' / '),
        `${fmt(r.producerMiB, 1)} (${fmt(r.producerIdleMiB, 1)})`,
        fmt(r.schedulerMiB, 1),
        r.workerMiB.map((m) => fmt(m, 1)).join(' / '),
        `${fmt(r.redisPeakSampledMiB, 2)} (${fmt(r.redisPeakMiB, 2)})`,
        `${fmt(r.cpu.producer, 2)}/${fmt(r.cpu.scheduler, 2)}/${fmt(r.cpu.redis, 2)}`,
      ]),
    ),
  );

  console.log(`\n== medians per size (${WORKERS} worker(s), ${PIN ? 'one pinned core each' : 'unpinned'}) ==`);
  const rows = SIZES.map((size) => {
    const rs = reps.filter((r) => r.size === size);
    const m = (f: (r: Rep) => number) => median(rs.map(f));
    const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
    const workerCpu = (r: Rep) => sum(r.run.cpu.workers);
    const workerLinesPerCpuS = m((r) => r.size / workerCpu(r));
    return [
      fmt(size),
      String(rs.length),
      fmt(m((r) => r.run.linesPerSecond)),
      fmt(m((r) => r.ceiling)),
      pct(m((r) => r.perCore)),
      fmt(workerLinesPerCpuS),
      fmt(m((r) => r.ceilingPerCpuS)),
      pct(m((r) => r.size / workerCpu(r) / r.ceilingPerCpuS)),
      pct(m((r) => workerCpu(r) / r.run.seconds / WORKERS)),
      pct(m((r) => 1 - sum(r.run.cpu.workersMain) / workerCpu(r))),
      fmt(Math.max(...rs.map((r) => r.run.producerMiB)), 1),
      fmt(Math.max(...rs.map((r) => r.run.schedulerMiB)), 1),
      fmt(Math.max(...rs.flatMap((r) => r.run.workerMiB)), 1),
      fmt(Math.max(...rs.map((r) => Math.max(r.run.redisPeakMiB, r.run.redisPeakSampledMiB))), 2),
    ];
  });
  console.log(
    table(
      [
        'lines',
        'reps',
        'fleet lines/s',
        'ceiling lines/s (warm, 1 core)',
        'fleet / workers / ceiling',
        'worker lines/CPU-s',
        'ceiling lines/CPU-s',
        'CPU efficiency',
        'worker busy',
        'worker CPU off the main thread',
        'max producer MiB',
        'max scheduler MiB',
        'max worker MiB',
        'max Redis MiB',
      ],
      rows,
    ),
  );
  console.log(
    '\nMiB = 2^20 bytes (200 MB = 190.7 MiB; 50 MB = 47.7 MiB). Targets: per worker core ≥ 80 % of the ceiling; producer peak RSS < 200 MB; Redis peak used_memory < 50 MB',
  );
}

await main();
