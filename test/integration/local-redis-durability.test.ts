/**
 * The launcher's private Redis keeps what it acknowledged: queued BullMQ jobs survive a clean stop
 * (SIGTERM) and a SIGKILL of redis-server, because it writes an append-only file in a data directory
 * that outlives it; a second server on the same directory is refused. Real redis-server processes
 * on free ports; the shared Redis is not touched. Also: the eviction check every role runs at start,
 * against a real server whose policy the test sets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { processAlive } from '../../common/process.ts';
import { checkEviction, EvictionPolicyError } from '../../common/redis-eviction.ts';
import { NoRedisError, startPrivateRedis, type PrivateRedis } from '../../launcher/local-redis.ts';
import { until } from '../helpers/until.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'interfleet-durable-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function start(dir: string): Promise<PrivateRedis> {
  const redis = await startPrivateRedis({ dataDir: dir, appendfsync: 'everysec' });
  cleanups.push(() => redis.stop());
  return redis;
}

/** `n` jobs added one by one, each acknowledged by Redis before the next. */
async function addJobs(url: string, n: number): Promise<void> {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue('bulk.default', { connection, prefix: 'durable' });
  for (let i = 0; i < n; i++) await queue.add('chunk', { i }, { jobId: `job-${i}` });
  await queue.close();
  connection.disconnect();
}

async function waiting(url: string): Promise<number> {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue('bulk.default', { connection, prefix: 'durable' });
  const counts = await queue.getJobCounts('wait');
  await queue.close();
  connection.disconnect();
  return counts.wait ?? 0;
}

describe("the launcher's private Redis", () => {
  it('keeps queued jobs across a clean stop and start on the same data directory', async () => {
    const dir = dataDir();
    const first = await start(dir);
    await addJobs(first.url, 200);
    await first.stop();
    const second = await start(dir);
    expect(second.url).not.toBe(first.url); // a new port: the data came from the file, not the process
    expect(await waiting(second.url)).toBe(200);
  });

  it('keeps every acknowledged job when redis-server is killed with SIGKILL (appendfsync everysec)', async () => {
    const dir = dataDir();
    const first = await start(dir);
    await addJobs(first.url, 300);
    process.kill(first.pid, 'SIGKILL'); // no shutdown fsync: what was written before each reply must be there
    await until(async () => (processAlive(first.pid) ? undefined : true));
    const second = await start(dir);
    expect(await waiting(second.url)).toBe(300);
  });

  it('refuses a second server on a data directory in use, naming the pid and what to do', async () => {
    const dir = dataDir();
    const first = await start(dir);
    const err = await startPrivateRedis({ dataDir: dir, appendfsync: 'everysec' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoRedisError);
    expect((err as Error).message).toContain(
      `A redis-server (pid ${first.pid}) is already running on the data directory ${dir}`,
    );
    expect((err as Error).message).toContain('INTERFLEET_REDIS_DIR');
  });
});

describe('checkEviction', () => {
  async function withPolicy(
    policy: string,
  ): Promise<{ redis: Redis; logs: Array<{ level: number; msg: string; problem?: string }> }> {
    const server = await startPrivateRedis();
    cleanups.push(() => server.stop());
    const redis = new Redis(server.url);
    cleanups.push(() => void redis.disconnect());
    await redis.config('SET', 'maxmemory-policy', policy);
    const logs: Array<{ level: number; msg: string; problem?: string }> = [];
    return { redis, logs };
  }
  const logger = (logs: Array<{ level: number; msg: string }>) =>
    pino(
      { level: 'debug' },
      { write: (line: string) => void logs.push(JSON.parse(line) as { level: number; msg: string }) },
    );

  it('says nothing for noeviction, logs an error for an evicting policy, refuses in refuse mode', async () => {
    const ok = await withPolicy('noeviction');
    await checkEviction(ok.redis, 'refuse', logger(ok.logs));
    expect(ok.logs).toEqual([]);

    const lru = await withPolicy('allkeys-lru');
    await checkEviction(lru.redis, 'warn', logger(lru.logs));
    expect(lru.logs).toHaveLength(1);
    expect(lru.logs[0]).toMatchObject({ level: 50, msg: 'Redis eviction policy' });
    expect(lru.logs[0]!.problem).toMatch(
      /has maxmemory-policy allkeys-lru\): queued jobs and batch state would be lost/,
    );

    const refused = await checkEviction(lru.redis, 'refuse', logger([])).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(EvictionPolicyError);
    expect((refused as EvictionPolicyError).code).toBe('redis_evicts');
    await checkEviction(lru.redis, 'off', logger(lru.logs));
    expect(lru.logs).toHaveLength(1);
  });
});
