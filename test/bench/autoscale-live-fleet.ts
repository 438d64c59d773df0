/**
 * bench:autoscale-live's fleet: `npm start`'s launcher as real processes
 * (producer, scheduler with the local actuator, forked sim gpu-workers) under
 * its own Redis key prefix, started and stopped as test/e2e/autoscale-local
 * does, plus a sampler of the pool's autoscale record (desired and ready
 * replicas) through the API's explain endpoint.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { schedulerExplainSchema, type AutoscaleExplanation } from '../../common/contracts/explain.ts';
import { freePort } from '../../launcher/local-redis.ts';
import { deleteKeys, REDIS_URL } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';
import { testFileRootsEnv } from '../helpers/file-roots.ts';

const launcherEntry = fileURLToPath(new URL('../../launcher/main.ts', import.meta.url));

export interface LiveFleet {
  url: string;
  explain(): Promise<AutoscaleExplanation | null>;
  /** Ctrl-C (SIGINT): drains every process; resolves with the launcher's exit code. */
  stop(): Promise<number | null>;
}

export async function startLiveFleet(configYaml: string, pool: string): Promise<LiveFleet> {
  const dir = await mkdtemp(join(tmpdir(), 'interfleet-autoscale-live-'));
  await writeFile(join(dir, 'config.yaml'), configYaml);
  const prefix = `bench-autoscale-live-${randomUUID().slice(0, 8)}`;
  const port = await freePort();
  let output = '';
  const launcher: ChildProcess = spawn(process.execPath, ['--import', 'tsx', launcherEntry], {
    env: {
      ...process.env,
      INTERFLEET_CONFIG: join(dir, 'config.yaml'),
      ...testFileRootsEnv,
      INTERFLEET_PREFIX: prefix,
      REDIS_URL,
      HOST: '127.0.0.1',
      PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', (code) => resolve(code)));
  launcher.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  launcher.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const cleanup = async (): Promise<void> => {
    const redis = new Redis(REDIS_URL);
    await deleteKeys(redis, prefix);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await until(async () => (output.includes('Ctrl-C stops everything') ? true : undefined), 120_000);
  } catch {
    if (launcher.exitCode === null) launcher.kill('SIGKILL');
    await exited;
    await cleanup();
    throw new Error(`the launcher did not start:\n${output}`);
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    async explain() {
      const res = await fetch(`${url}/v1/scheduler/explain?pool=${encodeURIComponent(pool)}`);
      const body = schedulerExplainSchema.parse(await res.json());
      return body.pools[0]?.autoscale ?? null;
    },
    async stop() {
      let code: number | null = null;
      if (launcher.exitCode === null) {
        launcher.kill('SIGINT');
        const timer = setTimeout(() => launcher.kill('SIGKILL'), 60_000);
        code = await exited;
        clearTimeout(timer);
      }
      await cleanup();
      // Warnings the fleet logged (log level warn): worth reading when the figures look off.
      const warnings = output.split('\n').filter((l) => /"level":(40|50|60)/.test(l));
      if (warnings.length > 0) console.log(`launcher logged ${warnings.length} warnings/errors, first: ${warnings[0]}`);
      return code;
    },
  };
}

/** Polls the pool's autoscale record every `everyMs` until stopped; calls `onSample` with each. */
export function sampleReplicas(
  fleet: LiveFleet,
  everyMs: number,
  onSample: (at: number, a: AutoscaleExplanation) => void,
): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = performance.now();
      const a = await fleet.explain().catch(() => null);
      if (a) onSample(at, a);
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (performance.now() - at))));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}
