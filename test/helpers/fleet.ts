/**
 * A whole fleet in the test process, isolated under its own Redis key prefix:
 * the real producer (HTTP on a free port) and real gpu-workers, against the
 * Redis at REDIS_URL. `stop()` closes everything and deletes the prefix's keys.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../../common/config.ts';
import { silentLogger } from '../../common/logger.ts';
import { settleWithin } from '../../common/process.ts';
import type { ModelBackend } from '../../gpu-worker/backends/backend.ts';
import { startWorker, type RunningWorker } from '../../gpu-worker/worker.ts';
import { startProducer, type RunningProducer } from '../../producer/server.ts';
import { testFileRootsEnv } from './file-roots.ts';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestFleet {
  config: Config;
  prefix: string;
  producer: RunningProducer;
  workers: RunningWorker[];
  /** A plain Redis client for assertions. */
  redis: Redis;
  stop(): Promise<void>;
}

export interface FleetOptions {
  /** YAML config text (pools etc.); redis url/prefix and ports are set here. */
  yaml?: string;
  workers?: number;
  /** Replaces the configured backend in every worker. */
  backend?: () => ModelBackend;
  env?: Record<string, string>;
}

export function testConfig(yaml = '', env: Record<string, string> = {}): Config {
  return parseConfig(
    {
      REDIS_URL,
      INTERFLEET_PREFIX: `t-${randomUUID().slice(0, 12)}`,
      WORKER_METRICS_PORT: '-1',
      SCHEDULER_METRICS_PORT: '-1',
      LOG_LEVEL: 'silent',
      // file:// under the temporary directory, where tests make their folders (env may name others).
      ...testFileRootsEnv,
      ...env,
    },
    yaml,
  );
}

export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

export async function startFleet(opts: FleetOptions = {}): Promise<TestFleet> {
  const config = testConfig(opts.yaml, opts.env);
  const logger = silentLogger();
  const workers: RunningWorker[] = [];
  for (let i = 0; i < (opts.workers ?? 1); i++) {
    workers.push(await startWorker(config, { logger, ...(opts.backend ? { backend: opts.backend() } : {}) }));
  }
  const producer = await startProducer(config, { logger, port: 0 });
  // The fleet's own Redis (opts.env may name another than REDIS_URL, as a chaos row does).
  const redis = new Redis(config.redis.url);
  return {
    config,
    prefix: config.redis.prefix,
    producer,
    workers,
    redis,
    async stop() {
      await producer.close(0);
      await Promise.all(workers.map((w) => w.close(0)));
      // Bounded: a test that stopped its private Redis has nothing left to delete, and ioredis would retry forever.
      await settleWithin(deleteKeys(redis, config.redis.prefix), 2000);
      redis.disconnect();
    },
  };
}
