/**
 * `npm start` with no Redis to reach keeps its work across a restart: the
 * launcher starts its private redis-server on a data directory, a batch runs
 * to completion, Ctrl-C stops everything (the Redis too), and a second
 * launcher on the same directory still has the batch and its counts. Real
 * processes: the launcher from the sources, its forked workers, redis-server.
 */
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../launcher/local-redis.ts';
import { startLauncher, type LauncherProcess } from '../helpers/launcher-process.ts';
import { until } from '../helpers/until.ts';

let dir: string;
let env: Record<string, string>;
const launchers: LauncherProcess[] = [];

beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'interfleet-launcher-redis-')));
  await mkdir(join(dir, 'data'));
  const lines = Array.from({ length: 20 }, (_, i) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: `great product ${i}` } },
    }),
  );
  await writeFile(join(dir, 'data', 'in.jsonl'), `${lines.join('\n')}\n`);
  await writeFile(join(dir, 'outside.jsonl'), `${lines.join('\n')}\n`);
  await writeFile(
    join(dir, 'config.yaml'),
    'scheduler: { metricsPort: -1 }\nworker: { metricsPort: -1 }\nlog: { level: warn }\n',
  );
  env = {
    // Nothing listens there: the launcher starts its private, persisted Redis.
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    INTERFLEET_REDIS_DIR: join(dir, 'redis'),
    INTERFLEET_CONFIG: join(dir, 'config.yaml'),
    // No roots configured: file:// gets the launcher's data directory, as under a plain `npm start`.
    INTERFLEET_FILE_ROOTS: '',
    INTERFLEET_DATA_DIR: join(dir, 'data'),
  };
});

afterAll(async () => {
  for (const l of launchers) await l.kill();
  await rm(dir, { recursive: true, force: true });
});

interface Batch {
  id: string;
  status: string;
  request_counts: { total: number; completed: number; failed: number };
}

const batch = async (url: string, id: string): Promise<Batch> =>
  (await (await fetch(`${url}/v1/batches/${id}`)).json()) as Batch;

async function stop(launcher: LauncherProcess): Promise<number | null> {
  launcher.proc.kill('SIGINT');
  return launcher.exited;
}

describe("npm start's private Redis", () => {
  it('keeps a finished batch across a restart of the whole fleet (file:// under its data directory only)', async () => {
    const first = await startLauncher(env);
    launchers.push(first);
    expect(first.output()).toContain(`kept in ${env.INTERFLEET_REDIS_DIR}`);
    expect(first.output()).toContain(`file:// batches may read and write under ${join(dir, 'data')}`);
    const outside = await fetch(`${first.url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input_file: pathToFileURL(join(dir, 'outside.jsonl')).href, endpoint: '/v1/infer' }),
    });
    expect(outside.status).toBe(403);
    const res = await fetch(`${first.url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        input_file: pathToFileURL(join(dir, 'data', 'in.jsonl')).href,
        endpoint: '/v1/infer',
        model: 'default',
      }),
    });
    const { id } = (await res.json()) as Batch;
    expect(res.status).toBe(200);
    const done = await until(async () => {
      const b = await batch(first.url, id);
      return b.status === 'completed' ? b : undefined;
    }, 60_000);
    expect(done.request_counts).toEqual({ total: 20, completed: 20, failed: 0 });
    expect(await stop(first)).toBe(0);

    const second = await startLauncher(env);
    launchers.push(second);
    expect(await batch(second.url, id)).toMatchObject({ id, status: 'completed', request_counts: done.request_counts });
    expect(await stop(second)).toBe(0);
  }, 150_000);
});
