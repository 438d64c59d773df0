/**
 * `npm run bench:producer-memory`: where the producer's resident memory goes,
 * each figure from a fresh process (RSS only ever grows within one):
 * - node alone, node with tsx's loader, then the producer's modules imported
 *   (producer/server.ts), then the cloud storage SDKs on top (what every
 *   producer carried before they were imported on first use of gs:// or oci://);
 * - planning an N-line batch (BENCH_LINES, default 1,000,000) into a plan file
 *   with the producer's own planToStorage: RSS, heap and ArrayBuffer growth.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(self), '../..');
const mib = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;

/** Runs this file under tsx in a fresh node process in `mode`; returns its one JSON line. */
function child(mode: string): Record<string, number> {
  const args = ['--import', 'tsx', '--expose-gc', self, mode];
  return JSON.parse(execFileSync(process.execPath, args, { cwd: root, env: process.env, encoding: 'utf8' }).trim());
}

/** RSS of a bare node process (no tsx: it cannot load this file). */
function bareRss(): number {
  const out = execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.memoryUsage().rss))'], {
    encoding: 'utf8',
  });
  return mib(Number(out));
}

async function measure(mode: string): Promise<Record<string, number>> {
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
      const lines = Number(process.env.BENCH_LINES ?? 1_000_000);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'interfleet-plan-mem-'));
      const file = path.join(dir, 'in.jsonl');
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
      await planToStorage(
        createFileStorage(),
        pathToFileURL(file).href,
        pathToFileURL(path.join(dir, 'plan.jsonl')).href,
        {
          endpoint: '/v1/infer',
          model: 'p',
          chunkLines: 1000,
        },
      );
      clearInterval(timer);
      rmSync(dir, { recursive: true, force: true });
      return {
        lines,
        seconds: Math.round(performance.now() - t0) / 1000,
        rssBefore: mib(before.rss),
        rssGrowth: mib(peak.rss - before.rss),
        heapGrowth: mib(peak.heapUsed - before.heapUsed),
        arrayBuffersGrowth: mib(peak.arrayBuffers - before.arrayBuffers),
      };
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

const mode = process.argv[2];
if (mode) {
  process.stdout.write(`${JSON.stringify(await measure(mode))}\n`);
} else {
  console.log(`bench:producer-memory — node ${process.version}, ${os.cpus().length} CPUs, ${new Date().toISOString()}`);
  const bare = bareRss();
  const tsx = child('tsx').rss!;
  const producer = child('producer').rss!;
  const sdks = child('producer+sdks').rss!;
  console.log(`RSS MiB: node ${bare}; + tsx ${tsx} (+${mib((tsx - bare) * 1048576)})`);
  console.log(`         producer modules ${producer} (+${mib((producer - tsx) * 1048576)})`);
  console.log(
    `         + cloud SDKs (loaded only on first gs:// / oci:// use) ${sdks} (+${mib((sdks - producer) * 1048576)})`,
  );
  const plan = child('plan');
  console.log(
    `planning ${plan.lines!.toLocaleString('en-US')} lines in ${plan.seconds} s: RSS +${plan.rssGrowth} MiB ` +
      `(from ${plan.rssBefore}), heap +${plan.heapGrowth} MiB, ArrayBuffers +${plan.arrayBuffersGrowth} MiB ` +
      `(the custom_id set: 16 bytes per id)`,
  );
}
