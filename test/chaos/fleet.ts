/**
 * The fleet a chaos row runs: every role its own process (test/helpers/role-process.ts, tsx from
 * the sources): one producer, `schedulers` scheduler replicas and `workers` gpu-workers of one
 * `sim` pool, configured by one YAML file in the row's workDir. Redis is the suite's shared one
 * (under the row's prefix), or a private redis-server the row may kill (`privateRedis`, with an
 * append-only file), and the roles reach it directly or through a TCP proxy (`proxy`) the row
 * can cut.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis, type PrivateRedis } from '../../launcher/local-redis.ts';
import { deleteKeys } from '../helpers/fleet.ts';
import { startRole, standbyLine, type RoleProcess } from '../helpers/role-process.ts';
import { until } from '../helpers/until.ts';
import { startTcpProxy, type TcpProxy } from './proxy.ts';
import type { ChaosEnv } from './types.ts';

export const POOL = 'default';

export interface FleetOptions {
  workers?: number;
  schedulers?: number;
  /** YAML merged under `pools[0].lanes` (lock and stalled intervals). */
  lanes?: string;
  /** Extra top-level YAML (sections the base config does not have). */
  yaml?: string;
  /**
   * Bulk keeps every slot whatever real-time's latency: the pool's first-token objective is lax
   * (60 s) and the budget's floor is every bulk slot of `workers`, so no budget cut or chunk
   * preemption moves chunks off a worker while a row waits for one to hold a chunk and a rank.
   */
  bulkKeepsSlots?: boolean;
  /** A private redis-server with an append-only file in the workDir, fsynced as said. */
  privateRedis?: 'always' | 'everysec';
  /** Roles reach Redis through a TCP proxy the row can cut. */
  proxy?: boolean;
  /** A worker's drain on SIGTERM (default 15 s). */
  workerGraceMs?: number;
  /** Scheduler lease (default 2000 ms, renewed every 250 ms). */
  leaseTtlMs?: number;
  /** Replaces gpu-worker/main.ts (a worker with a test backend). */
  workerEntry?: string;
}

export interface ChaosFleet {
  readonly url: string;
  readonly prefix: string;
  /** Redis as the row sees it (direct, not through the proxy). */
  readonly redisUrl: string;
  readonly admin: Redis;
  readonly proxy?: TcpProxy;
  producer: RoleProcess;
  schedulers: RoleProcess[];
  workers: RoleProcess[];
  addWorker(): Promise<RoleProcess>;
  addScheduler(): Promise<RoleProcess>;
  /** SIGKILL of the private redis-server, then the same server again on the same port and data directory. */
  killRedis(): Promise<void>;
  restartRedis(): Promise<void>;
  /** Every role's output, for a failure's detail. */
  outputs(): string;
  stop(): Promise<void>;
}

/** The config every row starts from: short heartbeats and lease, a sim pool, small chunks. */
function configYaml(opts: FleetOptions): string {
  return `
log: { pretty: false }
producer: { defaultTimeoutMs: 10000, retryAfterMs: 1000 }
worker: { heartbeatMs: 500, heartbeatTtlMs: 3000, shutdownGraceMs: ${opts.workerGraceMs ?? 15000} }
scheduler: { renewEveryMs: 250, leaseTtlMs: ${opts.leaseTtlMs ?? 2000}, balanceEveryMs: 500${opts.bulkKeepsSlots ? `, balance: { minBudget: ${opts.workers ?? 2} }` : ''} }
batch: { chunkLines: 8, windowPerPool: 4, admitEveryMs: 200 }
${opts.yaml ?? ''}
pools:
  - name: ${POOL}
    backend: sim
    defaultMaxTokens: 16${opts.bulkKeepsSlots ? '\n    firstTokenObjectiveMs: 60000' : ''}
    lanes:
      realtime: { concurrency: 8 }
      training: { concurrency: 1, programs: ['${process.execPath}'], lockDurationMs: 2000, stalledIntervalMs: 1000 }
      bulk: { concurrency: 1, recordConcurrency: 8, lockDurationMs: 2000, stalledIntervalMs: 1000${opts.lanes ? `, ${opts.lanes}` : ''} }
`;
}

export async function startChaosFleet(env: ChaosEnv, opts: FleetOptions = {}): Promise<ChaosFleet> {
  const configFile = join(env.workDir, 'config.yaml');
  writeFileSync(configFile, configYaml(opts));
  const tmp = join(env.workDir, 'tmp');
  mkdirSync(tmp, { recursive: true });

  let redis: PrivateRedis | undefined;
  let redisUrl = env.redisUrl;
  const redisPort = opts.privateRedis ? await freePort() : 0;
  const persist = opts.privateRedis && { dataDir: join(env.workDir, 'redis'), appendfsync: opts.privateRedis };
  if (persist) {
    redis = await startPrivateRedis(persist, redisPort);
    redisUrl = redis.url;
  }
  const target = new URL(redisUrl);
  const proxy = opts.proxy ? await startTcpProxy(target.hostname, Number(target.port || 6379)) : undefined;
  const roleRedisUrl = proxy?.url ?? redisUrl;
  const port = await freePort();
  const roleEnv = {
    INTERFLEET_CONFIG: configFile,
    INTERFLEET_PREFIX: env.prefix,
    REDIS_URL: roleRedisUrl,
    TMPDIR: tmp,
    PORT: String(port),
    WORKER_METRICS_PORT: '-1',
    SCHEDULER_METRICS_PORT: '-1',
  };
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: null });
  admin.on('error', () => undefined);
  const all: RoleProcess[] = [];
  const start = (role: 'worker' | 'scheduler' | 'producer'): RoleProcess => {
    const p = startRole(role, roleEnv, role === 'worker' ? opts.workerEntry : undefined);
    all.push(p);
    return p;
  };

  const fleet: ChaosFleet = {
    url: `http://127.0.0.1:${port}`,
    prefix: env.prefix,
    redisUrl,
    admin,
    ...(proxy ? { proxy } : {}),
    producer: undefined as unknown as RoleProcess,
    schedulers: [],
    workers: [],
    async addWorker() {
      const w = start('worker');
      fleet.workers.push(w);
      await w.ready(60_000);
      return w;
    },
    async addScheduler() {
      const s = start('scheduler');
      fleet.schedulers.push(s);
      await s.ready(60_000, standbyLine);
      return s;
    },
    async killRedis() {
      if (!redis) throw new Error('killRedis: this fleet has no private redis-server');
      process.kill(redis.pid, 'SIGKILL');
      await redis.stop(); // reaps it; a persisted server's directory is kept
    },
    async restartRedis() {
      if (!persist) throw new Error('restartRedis: this fleet has no private redis-server');
      redis = await startPrivateRedis(persist, redisPort);
    },
    outputs: () => all.map((p) => `--- ${p.role} ${p.pid}\n${p.output().slice(-4000)}`).join('\n'),
    async stop() {
      for (const p of all) p.signal('SIGCONT');
      await Promise.all(all.map((p) => p.kill()));
      await proxy?.close();
      if (redis) {
        admin.disconnect();
        await redis.stop();
      } else {
        await deleteKeys(admin, env.prefix).catch(() => undefined);
        admin.disconnect();
      }
    },
  };
  try {
    // The scheduler first: the lease goes to the first replica, which the leader row kills.
    for (let i = 0; i < (opts.schedulers ?? 1); i++) {
      await fleet.addScheduler();
      if (i === 0)
        await until(
          async () => (fleet.schedulers[0]!.output().includes('became scheduler leader') ? true : undefined),
          30_000,
        );
    }
    fleet.producer = start('producer');
    await Promise.all([
      fleet.producer.ready(60_000),
      ...Array.from({ length: opts.workers ?? 2 }, () => fleet.addWorker()),
    ]);
    return fleet;
  } catch (err) {
    await fleet.stop();
    throw err;
  }
}

/** The processes' pid of a worker id (`<host>-<pid>-<8 hex>`), as the training API names a rank's worker. */
export const pidOfWorker = (workerId: string): number => Number(/-(\d+)-[0-9a-f]{8}$/.exec(workerId)?.[1] ?? NaN);
