/**
 * Finds a Redis for the single-machine default: the configured one if it
 * answers; else a private `redis-server` that is stopped on exit; else a
 * precise message on how to get one.
 *
 * The launcher's private Redis keeps its data: an append-only file in a data
 * directory that outlives the process (launcher.redis), so that a stopped and
 * restarted `npm start` finds every queued job and batch it had. Benchmarks
 * and tests ask for a throw-away one (a temporary dir, nothing persisted).
 * Either way it runs with `maxmemory-policy noeviction` (common/redis-eviction.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { processAlive } from '../common/process.ts';

export interface LocalRedis {
  url: string;
  /** Set when we started a private server. */
  stop?: () => Promise<void>;
  /** Where a persisted private server keeps its data (undefined: throw-away or not ours). */
  dataDir?: string;
}

/** A persisted private Redis: its data directory and how often its append-only file is fsynced. */
export interface Persistence {
  dataDir: string;
  appendfsync: 'everysec' | 'always' | 'no';
}

/** $XDG_STATE_HOME/interfleet/redis, else ~/.local/state/interfleet/redis (state, not cache: it holds work). */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  return join(state, 'interfleet', 'redis');
}

export class NoRedisError extends Error {}

export async function pingRedis(url: string, timeoutMs = 1000): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** A free loopback TCP port (free when asked: another process may take it first). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function hasBinary(name: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = spawn(name, ['--version'], { stdio: 'ignore' });
    probe.once('error', () => resolve(false));
    probe.once('exit', (code) => resolve(code === 0));
  });
}

export async function ensureRedis(url: string, persist?: Persistence): Promise<LocalRedis> {
  if (await pingRedis(url)) return { url };
  if (!(await hasBinary('redis-server'))) {
    throw new NoRedisError(
      [
        `No Redis answers at ${url}, and no redis-server is on PATH to start a private one.`,
        'Either install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)',
        'and run `npm start` again, or point REDIS_URL at a running Redis (redis://user:password@host:6379).',
      ].join('\n'),
    );
  }
  const started = await startPrivateRedis(persist);
  return { ...started, dataDir: persist?.dataDir };
}

/** A running private redis-server: its URL, its process id, and how to stop it (and remove its dir). */
export interface PrivateRedis {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a private `redis-server` on a free loopback port and waits until it
 * answers (a persisted one may first load its append-only file). Without
 * `persist`: a temporary dir, nothing persisted, removed on stop (benchmarks
 * use it for a Redis whose memory is theirs alone). With it: an append-only
 * file in `persist.dataDir`, kept on stop; a second server on the same dir
 * is refused (both would write one file). `port`: a given one instead of a free one (the
 * fault suite restarts a killed server where its clients look for it).
 */
export async function startPrivateRedis(persist?: Persistence, port?: number): Promise<PrivateRedis> {
  port ??= await freePort();
  let dir: string;
  if (persist) {
    dir = persist.dataDir;
    mkdirSync(dir, { recursive: true });
    refuseIfRunning(dir);
  } else {
    dir = mkdtempSync(join(tmpdir(), 'interfleet-redis-'));
  }
  const durability = persist
    ? ['--appendonly', 'yes', '--appendfsync', persist.appendfsync, '--pidfile', join(dir, 'redis.pid')]
    : ['--appendonly', 'no'];
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      ...durability,
      '--maxmemory-policy',
      'noeviction',
      '--logfile',
      join(dir, 'redis.log'),
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      // SIGTERM: Redis fsyncs its append-only file before it exits.
      child.kill('SIGTERM');
      await exited;
    }
    if (!persist) rmSync(dir, { recursive: true, force: true });
  };
  // Loading a large append-only file takes a while (Redis answers LOADING meanwhile).
  const waitMs = persist ? 60_000 : 5000;
  for (let waited = 0; waited < waitMs; waited += 100) {
    if (child.exitCode !== null) break;
    if (await pingRedis(url, 200)) return { url, pid: child.pid!, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new NoRedisError(
    `started redis-server on port ${port}, but it did not answer within ${waitMs / 1000} s (see its log in ${join(dir, 'redis.log')})`,
  );
}

/** A live redis-server already keeps its pid file in `dir`: another `npm start` owns this data. */
function refuseIfRunning(dir: string): void {
  const pidFile = join(dir, 'redis.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  if (!processAlive(pid)) return; // a stale pid file from a server that did not exit cleanly
  throw new NoRedisError(
    [
      `A redis-server (pid ${pid}) is already running on the data directory ${dir}: another \`npm start\`?`,
      'Stop it, or give this one its own directory (INTERFLEET_REDIS_DIR) or a Redis of its own (REDIS_URL).',
    ].join('\n'),
  );
}
