/**
 * Finds a Redis for the single-machine default: the configured one if it
 * answers; else a private `redis-server` (temporary dir, free port, nothing
 * persisted) that is stopped on exit; else a precise message on how to get one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface LocalRedis {
  url: string;
  /** Set when we started a private server. */
  stop?: () => Promise<void>;
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

export async function ensureRedis(url: string): Promise<LocalRedis> {
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
  return startPrivateRedis();
}

/** A running private redis-server: its URL, its process id, and how to stop it (and remove its dir). */
export interface PrivateRedis {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a private `redis-server` (temporary dir, free loopback port, nothing
 * persisted) and waits until it answers. The launcher uses it when no Redis
 * answers; benchmarks use it for a Redis whose memory is theirs alone.
 */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'interfleet-redis-'));
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
      '--appendonly',
      'no',
      '--logfile',
      join(dir, 'redis.log'),
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 50; i++) {
    if (await pingRedis(url, 200)) return { url, pid: child.pid!, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new NoRedisError(
    `started redis-server on port ${port}, but it did not answer within 5 s (see its log in ${dir})`,
  );
}
