/**
 * A fleet for `npm run bench:training`, every part its own process as in
 * production: a private redis-server (so that its INFO counters are this
 * fleet's alone), the producer (bin/build's bundle through bin/start), the
 * scheduler (tsx, batch-role.child.ts) and N gpu-workers (bin/build's
 * bundle, plain node; each rank's builtin trainer runs as the bundled
 * trainer-text-classifier.js). Config: the product's defaults; the effective
 * pass and heartbeat periods are printed by the bench.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { queueName } from '../../common/topology.ts';
import { TrainingStore } from '../../common/training/training-state.ts';
import { startPrivateRedis, type PrivateRedis } from '../../launcher/local-redis.ts';
import { Child } from './children.ts';
import { ProducerProcess } from './producer-process.ts';
import { testFileRootsEnv } from '../helpers/file-roots.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
export const PREFIX = 'bench';
export const POOL = 'default';

/** Redis's own counters: bytes in and out over every connection, and commands processed. */
export interface RedisCounters {
  inBytes: number;
  outBytes: number;
  commands: number;
  /** Calls per command name (INFO commandstats). */
  calls: Map<string, number>;
  /** Bytes of the two INFO replies this read got, which the next read's totals include. */
  ownReplyBytes: number;
}

/** What Redis did between two reads, less the reads themselves (two INFO commands each). */
export function countersDelta(
  a: RedisCounters,
  b: RedisCounters,
): { bytes: number; commands: number; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  for (const [name, n] of b.calls) {
    const d = n - (a.calls.get(name) ?? 0) - (name === 'info' ? 2 : 0);
    if (d > 0) calls.set(name, d);
  }
  // Requests `INFO stats` and `INFO commandstats` are 58 bytes together on the wire (25 + 33).
  const bytes = b.inBytes - a.inBytes - 58 + (b.outBytes - a.outBytes - a.ownReplyBytes);
  return { bytes, commands: b.commands - a.commands - 2, calls };
}

export interface BenchFleet {
  url: string;
  admin: Redis;
  store: TrainingStore;
  queue: Queue;
  counters(): Promise<RedisCounters>;
  stop(): Promise<void>;
}

/** INFO stats and commandstats; the bench's own INFO calls are in them (the caller subtracts them). */
async function readCounters(admin: Redis): Promise<RedisCounters> {
  const stats = await admin.info('stats');
  const commandstats = await admin.info('commandstats');
  const field = (name: string): number => Number(new RegExp(`${name}:(\\d+)`).exec(stats)?.[1] ?? 'NaN');
  const calls = new Map<string, number>();
  for (const m of commandstats.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls.set(m[1]!, Number(m[2]));
  return {
    inBytes: field('total_net_input_bytes'),
    outBytes: field('total_net_output_bytes'),
    commands: field('total_commands_processed'),
    calls,
    // A bulk string reply: `$<len>\r\n<body>\r\n`.
    ownReplyBytes: [stats, commandstats].reduce(
      (n, r) => n + Buffer.byteLength(r) + String(Buffer.byteLength(r)).length + 5,
      0,
    ),
  };
}

export async function startBenchFleet(workers: number, configFile: string): Promise<BenchFleet> {
  const redis: PrivateRedis = await startPrivateRedis();
  const env = {
    REDIS_URL: redis.url,
    INTERFLEET_CONFIG: configFile,
    ...testFileRootsEnv,
    INTERFLEET_PREFIX: PREFIX,
    LOG_LEVEL: 'warn',
    WORKER_METRICS_PORT: '-1',
    SCHEDULER_METRICS_PORT: '-1',
  };
  const children: { stop(graceMs: number): Promise<void> }[] = [];
  const admin = new Redis(redis.url);
  admin.on('error', () => undefined);
  const queue = new Queue(queueName('train', POOL), { connection: admin, prefix: PREFIX });
  const stop = async (): Promise<void> => {
    await Promise.all(children.map((c) => c.stop(5000)));
    await queue.close();
    admin.disconnect();
    await redis.stop();
  };
  try {
    const scheduler = Child.start(
      'scheduler',
      path.join(here, 'batch-role.child.ts'),
      { ...env, BENCH_ROLE: 'scheduler' },
      120_000,
    );
    children.push(scheduler);
    const workerChildren = Array.from({ length: workers }, (_, i) =>
      Child.start(`worker-${i}`, path.join(root, 'dist/gpu-worker/main.js'), env, 120_000, [], false),
    );
    children.push(...workerChildren);
    const producer = await ProducerProcess.start('bundle', env);
    children.push(producer);
    await scheduler.ready;
    await Promise.all(workerChildren.map((w) => w.ready));
    return {
      url: producer.url,
      admin,
      store: new TrainingStore(admin, PREFIX),
      queue,
      counters: () => readCounters(admin),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
