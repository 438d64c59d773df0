/**
 * npm run bench:redis-durability: what the launcher's durable Redis costs a producer, and what it
 * keeps. For each append-only setting (none: no file, as before; `no`: the OS decides when to
 * fsync; `everysec`, the default; `always`: fsync before each reply), on a fresh private
 * redis-server in its own data directory:
 * - sequential BullMQ `add`s (one in flight, as one API request enqueues): p50 / p99 latency;
 * - 64 `add`s in flight (many producers): jobs per second;
 * - SIGKILL of redis-server right after the last acknowledged add, restart on the same directory:
 *   how many acknowledged jobs are missing.
 * Repeated REPS times in rotation (noisy VM: medians); the baseline is `none`, measured in the same
 * run, and each setting's figures are printed beside it as ratios. A crash of the machine itself
 * (power, kernel) is what `everysec` can lose (up to about a second of writes, per Redis's docs):
 * that cannot be caused here and is not measured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startPrivateRedis, type Persistence, type PrivateRedis } from '../../launcher/local-redis.ts';
import { median, percentile, table } from './stats.ts';

const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 2000);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 20_000);
const IN_FLIGHT = 64;
const REPS = Number(process.env.BENCH_REPS ?? 3);
const modes = ['none', 'no', 'everysec', 'always'] as const;
type Mode = (typeof modes)[number];

interface Sample {
  p50: number;
  p99: number;
  jobsPerSecond: number;
  lost: number;
}

async function start(mode: Mode, dir: string): Promise<PrivateRedis> {
  if (mode === 'none') return startPrivateRedis();
  const persist: Persistence = { dataDir: dir, appendfsync: mode };
  return startPrivateRedis(persist);
}

function queueOn(url: string): { queue: Queue; close: () => Promise<void> } {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue('bulk.bench', { connection, prefix: 'bench' });
  return {
    queue,
    close: async () => {
      await queue.close();
      connection.disconnect();
    },
  };
}

async function once(mode: Mode): Promise<Sample> {
  const dir = mkdtempSync(join(tmpdir(), `interfleet-durability-${mode}-`));
  try {
    const redis = await start(mode, dir);
    const { queue, close } = queueOn(redis.url);
    const payload = { batchId: 'b-1', chunk: 0, uri: 'gs://bucket/input.jsonl', start: 0, end: 1_048_576 };
    const latencies = new Float64Array(SEQUENTIAL);
    for (let i = 0; i < SEQUENTIAL; i++) {
      const t0 = performance.now();
      await queue.add('chunk', payload, { jobId: `s-${i}` });
      latencies[i] = performance.now() - t0;
    }
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < PARALLEL) {
          const i = next++;
          await queue.add('chunk', payload, { jobId: `p-${i}` });
        }
      }),
    );
    const jobsPerSecond = (PARALLEL / (performance.now() - t0)) * 1000;
    await close();
    // Every add above was acknowledged; now the process dies without its shutdown fsync.
    process.kill(redis.pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    await redis.stop(); // reaps the child (and removes a throw-away dir)
    let lost = SEQUENTIAL + PARALLEL;
    if (mode !== 'none') {
      const again = await start(mode, dir);
      const reopened = queueOn(again.url);
      const { wait } = await reopened.queue.getJobCounts('wait');
      lost -= wait ?? 0;
      await reopened.close();
      await again.stop();
    }
    const sorted = latencies.sort();
    return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), jobsPerSecond, lost };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  console.log(
    `bench:redis-durability: ${SEQUENTIAL} sequential adds, ${PARALLEL} adds ${IN_FLIGHT} in flight, SIGKILL + restart; ${REPS} reps in rotation`,
  );
  // JIT and connection warm-up, discarded: the first setting measured would otherwise pay it.
  await once('none');
  const samples = new Map<Mode, Sample[]>(modes.map((m) => [m, []]));
  for (let rep = 1; rep <= REPS; rep++) {
    for (const mode of modes) {
      const s = await once(mode);
      samples.get(mode)!.push(s);
      console.log(
        `  rep ${rep} ${mode.padEnd(8)} p50 ${s.p50.toFixed(3)} ms  p99 ${s.p99.toFixed(3)} ms  ${Math.round(s.jobsPerSecond)} jobs/s  lost ${s.lost}`,
      );
    }
  }
  const med = (mode: Mode, key: keyof Sample): number => median(samples.get(mode)!.map((s) => s[key]));
  const base = { p50: med('none', 'p50'), p99: med('none', 'p99'), rate: med('none', 'jobsPerSecond') };
  const rows = modes.map((mode) => [
    mode === 'none' ? 'none (baseline)' : `appendfsync ${mode}`,
    `${med(mode, 'p50').toFixed(3)} (${(med(mode, 'p50') / base.p50).toFixed(2)}×)`,
    `${med(mode, 'p99').toFixed(3)} (${(med(mode, 'p99') / base.p99).toFixed(2)}×)`,
    `${Math.round(med(mode, 'jobsPerSecond'))} (${(med(mode, 'jobsPerSecond') / base.rate).toFixed(2)}×)`,
    mode === 'none'
      ? 'all (no file)'
      : `${Math.max(...samples.get(mode)!.map((s) => s.lost))} of ${SEQUENTIAL + PARALLEL}`,
  ]);
  console.log(
    '\nmedians over reps (ratio to the baseline in this run); lost: the most acknowledged jobs missing after SIGKILL + restart in any rep',
  );
  console.log(
    table(['append-only', 'add p50 ms', 'add p99 ms', `jobs/s (${IN_FLIGHT} in flight)`, 'lost on SIGKILL'], rows),
  );
  console.log(`\n${((Date.now() - started) / 1000).toFixed(1)} s in all`);
}

await main();
