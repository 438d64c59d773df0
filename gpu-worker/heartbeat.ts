/**
 * Tells the fleet this worker is alive: one HSET into the pool's workers hash
 * every `everyMs`, with an expiry time readers check, so a crashed worker
 * vanishes after `ttlMs` without anyone deleting it.
 */
import { hostname } from 'node:os';
import type { Heartbeat } from '../common/contracts/heartbeat.ts';
import type { Logger } from '../common/logger.ts';
import { settleWithin } from '../common/process.ts';
import type { RedisClient } from '../common/redis.ts';
import { workersKey } from '../common/topology.ts';
import type { Lane } from './realtime-lane.ts';
import type { WorkMeter } from './work-window.ts';

export interface HeartbeatDeps {
  redis: RedisClient;
  prefix: string;
  pool: string;
  workerId: string;
  backend: string;
  lanes: () => readonly Lane[];
  state: () => Heartbeat['state'];
  /** What the worker did lately (its lanes feed it); without one the heartbeat has no `work`. */
  work?: WorkMeter;
  everyMs: number;
  ttlMs: number;
  logger: Logger;
  now?: () => number;
}

export function heartbeatRecord(deps: HeartbeatDeps, startedAt: number, now: number): Heartbeat {
  return {
    workerId: deps.workerId,
    pool: deps.pool,
    host: hostname(),
    pid: process.pid,
    backend: deps.backend,
    lanes: deps.lanes().map((l) => ({ name: l.name, concurrency: l.concurrency, inFlight: l.inFlight() })),
    state: deps.state(),
    realtime: deps
      .lanes()
      .map((l) => l.latency?.(now))
      .find((w) => w !== undefined),
    work: deps.work?.window(now),
    startedAt,
    seenAt: now,
    expiresAt: now + deps.ttlMs,
  };
}

export interface HeartbeatHandle {
  /** Beats once now (used on state changes). */
  beat(): Promise<void>;
  /** Stops beating and removes this worker's entry. */
  stop(): Promise<void>;
}

export function startHeartbeat(deps: HeartbeatDeps): HeartbeatHandle {
  const now = deps.now ?? Date.now;
  const startedAt = now();
  const key = workersKey(deps.prefix, deps.pool);
  const beat = async (): Promise<void> => {
    const record = JSON.stringify(heartbeatRecord(deps, startedAt, now()));
    // Bounded: a beat that waits out an outage would report stale state when it lands.
    if (!(await settleWithin(deps.redis.hset(key, deps.workerId, record), deps.everyMs))) {
      deps.logger.warn('heartbeat not delivered');
    }
  };
  const timer = setInterval(() => void beat(), deps.everyMs);
  timer.unref();
  return {
    beat,
    async stop() {
      clearInterval(timer);
      // Best effort: if Redis is down the entry expires by itself.
      await settleWithin(deps.redis.hdel(key, deps.workerId), 1000);
    },
  };
}
