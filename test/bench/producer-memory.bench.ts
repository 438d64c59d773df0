/**
 * `npm run bench:producer-memory`: where the producer's resident memory goes.
 *
 * 1. Parts, each from a fresh process after a full GC (RSS only ever grows
 *    within one): node alone, node with tsx's loader, the producer's modules
 *    imported through tsx (producer/server.ts), then the cloud storage SDKs on
 *    top (what every producer carried before they were imported on first use
 *    of gs:// or oci://).
 * 2. The producer process itself, each way it can be run: as production runs
 *    it (`bundle`: bin/build's bundle through bin/start, plain node with the
 *    producer's V8 flags, the image's entry point), the same bundle without
 *    the flags, and producer/main.ts through tsx (how the image ran it
 *    before). Each on a private redis-server: RSS when ready (idle), then a
 *    BENCH_LINES-line batch (default 1,000,000) submitted with POST
 *    /v1/batches and planned by the producer's own plan job: the peak RSS
 *    (VmHWM) until planning ends (the batch's total is known; chunks may be
 *    admitted before), and the RSS then. No workers run: planning is the
 *    producer's whole share of a batch until finalisation.
 * 3. Planning alone in a fresh tsx process (planToStorage): RSS, heap and
 *    ArrayBuffer growth, and the custom_id set's bytes for that many ids.
 * Inputs are written by this process, never by the one measured.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
// Only types at the top: the measured children must load nothing but what they measure.
import type { ProducerMode } from './producer-process.ts';
import { testFileRootsEnv } from '../helpers/file-roots.ts';

const self = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(self), '../..');
const LINES = Number(process.env.BENCH_LINES ?? 1_000_000);
const mib = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;
const round1 = (x: number): number => Math.round(x * 10) / 10;

/** Runs this file under tsx in a fresh node process in `mode`; returns its one JSON line. */
function child(mode: string, arg = ''): Record<string, number> {
  const args = ['--import', 'tsx', '--expose-gc', self, mode, arg];
  return JSON.parse(execFileSync(process.execPath, args, { cwd: root, env: process.env, encoding: 'utf8' }).trim());
}

/** RSS of a bare node process (no tsx: it cannot load this file). */
function bareRss(): number {
  const out = execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.memoryUsage().rss))'], {
    encoding: 'utf8',
  });
  return mib(Number(out));
}

async function writeInput(file: string, lines: number): Promise<void> {
  const out = createWriteStream(file);
  let buf = '';
  for (let i = 0; i < lines; i++) {
    buf += `{"custom_id":"r${i}","method":"POST","url":"/v1/infer","body":{"input":{"task":"sentiment","text":"sentence ${i}"}}}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

async function measure(mode: string, arg: string): Promise<Record<string, number>> {
  // After a full GC, so that what is counted is what the modules keep, not their load-time garbage.
  const rss = () => {
    (globalThis as { gc?: () => void }).gc?.();
    return mib(process.memoryUsage().rss);
  };
  switch (mode) {
    case 'tsx':
      return { rss: rss() };
    case 'producer':
      await import('../../producer/server.ts');
      return { rss: rss() };
    case 'producer+sdks':
      await import('../../producer/server.ts');
      await import('@google-cloud/storage');
      await import('oci-objectstorage');
      return { rss: rss() };
    case 'plan': {
      const { createFileStorage } = await import('../../common/storage/index.ts');
      const { planToStorage } = await import('../../producer/batch/plan-to-storage.ts');
      const { CustomIdSet } = await import('../../producer/batch/custom-id-set.ts');
      const file = arg;
      (globalThis as { gc?: () => void }).gc?.();
      const before = process.memoryUsage();
      let peak = { rss: 0, heapUsed: 0, arrayBuffers: 0 };
      const timer = setInterval(() => {
        const m = process.memoryUsage();
        peak = {
          rss: Math.max(peak.rss, m.rss),
          heapUsed: Math.max(peak.heapUsed, m.heapUsed),
          arrayBuffers: Math.max(peak.arrayBuffers, m.arrayBuffers),
        };
      }, 10);
      const t0 = performance.now();
      const planned = await planToStorage(
        createFileStorage(),
        pathToFileURL(file).href,
        pathToFileURL(`${file}.plan-${process.pid}`).href,
        { endpoint: '/v1/infer', model: 'p', chunkLines: 1000 },
      );
      const seconds = Math.round(performance.now() - t0) / 1000;
      clearInterval(timer);
      rmSync(`${file}.plan-${process.pid}`, { force: true });
      // The set alone, filled with as many ids as the batch had, for its own footprint.
      const ids = new CustomIdSet();
      for (let i = 0; i < planned.totalLines; i++) ids.add(`r${i}`);
      const setBytes = ids.bytes;
      ids.close();
      return {
        lines: planned.totalLines,
        seconds,
        rssBefore: mib(before.rss),
        rssGrowth: mib(peak.rss - before.rss),
        heapGrowth: mib(peak.heapUsed - before.heapUsed),
        arrayBuffersGrowth: mib(peak.arrayBuffers - before.arrayBuffers),
        setMiB: mib(setBytes),
      };
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

interface ProcessRun {
  idle: number;
  peak: number;
  after: number;
  planningSeconds: number;
}

/** The producer run `mode`-wise: idle RSS, then the peak while it plans `inputUri`. */
async function producerRun(mode: ProducerMode, inputUri: string): Promise<ProcessRun> {
  const { startPrivateRedis } = await import('../../launcher/local-redis.ts');
  const { ProducerProcess, rssMiB, submitBatch } = await import('./producer-process.ts');
  const redis = await startPrivateRedis();
  let producer: Awaited<ReturnType<typeof ProducerProcess.start>> | undefined;
  try {
    producer = await ProducerProcess.start(mode, {
      REDIS_URL: redis.url,
      INTERFLEET_PREFIX: 'bench',
      LOG_LEVEL: 'warn',
      ...testFileRootsEnv,
    });
    await new Promise((r) => setTimeout(r, 2000)); // settled after start
    const idle = rssMiB(producer.pid, 'VmRSS');
    const t0 = performance.now();
    const id = await submitBatch(producer.url, inputUri);
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      const batch = (await (await fetch(`${producer.url}/v1/batches/${id}`)).json()) as {
        status: string;
        request_counts: { total: number };
      };
      if (!['validating', 'in_progress'].includes(batch.status)) throw new Error(`batch ${id} is ${batch.status}`);
      if (batch.request_counts.total > 0) break; // planned: the total is set when planning ends
    }
    const planningSeconds = (performance.now() - t0) / 1000;
    return { idle, peak: rssMiB(producer.pid), after: rssMiB(producer.pid, 'VmRSS'), planningSeconds };
  } finally {
    await producer?.stop(5000);
    await redis.stop();
  }
}

const mode = process.argv[2];
if (mode) {
  process.stdout.write(`${JSON.stringify(await measure(mode, process.argv[3] ?? ''))}\n`);
} else {
  console.log(`bench:producer-memory — node ${process.version}, ${os.cpus().length} CPUs, ${new Date().toISOString()}`);
  const bare = bareRss();
  const tsx = child('tsx').rss!;
  const producer = child('producer').rss!;
  const sdks = child('producer+sdks').rss!;
  console.log(`parts, RSS MiB after a full GC: node ${bare}; + tsx's loader ${tsx} (+${round1(tsx - bare)})`);
  console.log(`         producer modules through tsx ${producer} (+${round1(producer - tsx)})`);
  console.log(`         + cloud SDKs (loaded only on first gs:// / oci:// use) ${sdks} (+${round1(sdks - producer)})`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'interfleet-producer-mem-'));
  try {
    const file = path.join(dir, 'in.jsonl');
    await writeInput(file, LINES);
    const { buildBundles, producerModes } = await import('./producer-process.ts');
    buildBundles();
    const n = LINES.toLocaleString('en-US');
    console.log(`\nthe producer process, RSS MiB: idle when ready, peak while planning ${n} lines, and after`);
    for (const m of [...producerModes].reverse()) {
      const run = await producerRun(m, pathToFileURL(file).href);
      const how = {
        bundle: 'bundle + V8 flags (production: bin/start)',
        'bundle-noflags': 'bundle, no V8 flags',
        tsx: 'producer/main.ts through tsx (before)',
      }[m];
      console.log(
        `  ${how.padEnd(42)} idle ${round1(run.idle)}, peak ${round1(run.peak)} (+${round1(run.peak - run.idle)}), ` +
          `after ${round1(run.after)}; planned in ${run.planningSeconds.toFixed(2)} s`,
      );
    }
    const plan = child('plan', file);
    console.log(
      `\nplanning ${n} lines alone (planToStorage, tsx) in ${plan.seconds} s: RSS +${plan.rssGrowth} MiB ` +
        `(from ${plan.rssBefore}), heap +${plan.heapGrowth} MiB, ArrayBuffers +${plan.arrayBuffersGrowth} MiB; ` +
        `the custom_id set holds ${plan.setMiB} MiB for ${n} ids (bounded: at most ~12 MiB, then spills to disk)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
