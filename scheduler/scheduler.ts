/**
 * The scheduler role. Every replica campaigns for the leader lease; only the
 * leader runs the control loops. For now the loop is heartbeat bookkeeping:
 * removing the entries of workers whose heartbeats expired. Admission,
 * priority balancing and autoscaling will join it as further loops.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Config } from '../common/config.ts';
import { expiredWorkerIds } from '../common/contracts/heartbeat.ts';
import type { Logger } from '../common/logger.ts';
import { closeRedis, createRedis } from '../common/redis.ts';
import { workersKey } from '../common/topology.ts';
import { removeWorkers, StaleLeaderError } from './fenced-writes.ts';
import { LeaderLease } from './leader-lease.ts';

export interface RunningScheduler {
  readonly candidateId: string;
  /** The epoch this replica leads with, or 0 when it is a standby. */
  epoch(): number;
  /** One pass of the loop (tests call it to avoid waiting for the timer). */
  tick(): Promise<void>;
  close(): Promise<void>;
}

export interface SchedulerOptions {
  logger: Logger;
  now?: () => number;
}

export async function startScheduler(config: Config, opts: SchedulerOptions): Promise<RunningScheduler> {
  const now = opts.now ?? Date.now;
  const candidateId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const logger = opts.logger.child({ role: 'scheduler', candidateId });
  const redis = createRedis(config.redis, 'worker', { connectionName: `scheduler:${candidateId}` });
  const prefix = config.redis.prefix;
  const lease = new LeaderLease(redis, prefix, candidateId, config.scheduler.leaseTtlMs);
  let epoch = 0;

  const cleanHeartbeats = async (): Promise<void> => {
    for (const pool of config.pools) {
      const raw = await redis.hgetall(workersKey(prefix, pool.name));
      const dead = expiredWorkerIds(raw, now());
      if (dead.length === 0) continue;
      const removed = await removeWorkers(redis, prefix, pool.name, epoch, dead);
      logger.info({ pool: pool.name, removed, workers: dead }, 'removed expired worker heartbeats');
    }
  };

  const tick = async (): Promise<void> => {
    let next = 0;
    try {
      next = await lease.tryAcquire();
    } catch (err) {
      logger.warn({ err }, 'leader lease check failed');
    }
    if (next !== epoch) {
      if (next > 0) logger.info({ epoch: next }, 'became scheduler leader');
      else logger.warn({ epoch }, 'lost scheduler leadership');
      epoch = next;
    }
    if (epoch === 0) return;
    try {
      await cleanHeartbeats();
    } catch (err) {
      if (err instanceof StaleLeaderError) {
        logger.warn({ epoch }, 'a newer leader exists; standing down');
        epoch = 0;
      } else {
        logger.warn({ err }, 'heartbeat bookkeeping failed');
      }
    }
  };

  await tick();
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(tick);
  }, config.scheduler.renewEveryMs);

  return {
    candidateId,
    epoch: () => epoch,
    tick: () => (running = running.then(tick)),
    async close() {
      clearInterval(timer);
      await running;
      await lease.release().catch(() => undefined);
      epoch = 0;
      await closeRedis(redis);
      logger.info('scheduler closed');
    },
  };
}
