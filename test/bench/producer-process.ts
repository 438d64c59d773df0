/**
 * The producer as production runs it, for the benchmarks: bin/build's bundle
 * started through bin/start (node with the producer's V8 flags, no tsx; the
 * image's entry point), listening on a free port, ready once /healthz
 * answers. For comparisons, `bundle-noflags` runs the same bundle without the
 * flags and `tsx` runs producer/main.ts through tsx, as the image did before.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../launcher/local-redis.ts';
import { stopProcess } from './children.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const producerModes = ['bundle', 'bundle-noflags', 'tsx'] as const;
export type ProducerMode = (typeof producerModes)[number];

export function producerMode(value: string | undefined): ProducerMode {
  const mode = (value ?? 'bundle') as ProducerMode;
  if (!producerModes.includes(mode))
    throw new Error(`producer mode must be one of ${producerModes.join(', ')}: ${value}`);
  return mode;
}

/** Bundles the sources as `npm run build` does, so that a bench measures the code in front of it. */
export function buildBundles(): void {
  execFileSync(path.join(root, 'bin/build'), { stdio: 'inherit' });
}

/** Resident set of a live process in MiB: peak (VmHWM) or now (VmRSS). */
export function rssMiB(pid: number, field: 'VmHWM' | 'VmRSS' = 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 'NaN') / 1024;
}

/** POST /v1/batches over `inputUri` (pool `default`, `/v1/infer`); the batch id. */
export async function submitBatch(url: string, inputUri: string): Promise<string> {
  const res = await fetch(`${url}/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_file: inputUri, endpoint: '/v1/infer', model: 'default' }),
  });
  if (!res.ok) throw new Error(`POST /v1/batches: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export class ProducerProcess {
  private readonly exited: Promise<void>;

  private constructor(
    readonly proc: ChildProcess,
    readonly url: string,
  ) {
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Starts the producer (`mode`) with `env` on top of ours; resolves when it answers /healthz. */
  static async start(
    mode: ProducerMode,
    env: Record<string, string>,
    readyTimeoutMs = 120_000,
  ): Promise<ProducerProcess> {
    const port = await freePort();
    const [cmd, args] =
      mode === 'tsx'
        ? [process.execPath, ['--import', 'tsx', path.join(root, 'producer/main.ts')]]
        : [path.join(root, 'bin/start'), ['dist/producer/main.js']];
    const proc = spawn(cmd, args, {
      cwd: root,
      // bin/start execs node: the pid is the producer's own.
      env: {
        ...process.env,
        ...env,
        HOST: '127.0.0.1',
        PORT: String(port),
        ...(mode === 'bundle-noflags' ? { INTERFLEET_NODE_FLAGS: '' } : {}),
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const producer = new ProducerProcess(proc, `http://127.0.0.1:${port}`);
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`producer (${mode}) exited before it was ready`);
      const ok = await fetch(`${producer.url}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return producer;
      if (Date.now() > deadline) {
        await producer.stop(1000);
        throw new Error(`producer (${mode}) not ready within ${readyTimeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs = 5000): Promise<void> {
    return stopProcess(this.proc, this.exited, graceMs);
  }
}
