/**
 * The priority-balancing pass against a real Redis: heartbeats in the pool's
 * workers hash (written here as workers write them), real-time jobs waiting
 * in `rt.<pool>`, and the budget landing as BullMQ's global concurrency on
 * `bulk.<pool>`, which a real BullMQ Worker then obeys.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../common/config.ts';
import type { BudgetExplanation } from '../../common/contracts/explain.ts';
import type { Heartbeat } from '../../common/contracts/heartbeat.ts';
import { bucketOf, emptyCounts } from '../../common/latency-window.ts';
import { silentLogger } from '../../common/logger.ts';
import { explainKey, queueName, workersKey } from '../../common/topology.ts';
import { BudgetLoop } from '../../scheduler/budget-loop.ts';
import { createSchedulerMetrics } from '../../scheduler/metrics.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

let redis: Redis;
const cleanups: (() => Promise<void>)[] = [];
beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => redis.disconnect());

interface Env {
  config: Config;
  loop: BudgetLoop;
  clock: { now: number };
  preempted: { pool: string; count: number; reason: string }[];
  bulk: Queue;
  rt: Queue;
}

function setup(): Env {
  const config = testConfig(`
pools: [{ name: p, backend: echo, firstTokenObjectiveMs: 200 }]
scheduler: { balance: { holdAfterDecreaseMs: 3000, minSamples: 20 } }
`);
  const prefix = config.redis.prefix;
  const clock = { now: Date.now() };
  const preempted: Env['preempted'] = [];
  const loop = new BudgetLoop({
    redis,
    prefix,
    pools: config.pools,
    balance: config.scheduler.balance,
    metrics: createSchedulerMetrics({}),
    logger: silentLogger(),
    now: () => clock.now,
    preempt: async (pool, count, reason) => {
      preempted.push({ pool, count, reason });
    },
  });
  const bulk = new Queue(queueName('bulk', 'p'), { connection: redis, prefix });
  const rt = new Queue(queueName('rt', 'p'), { connection: redis, prefix });
  cleanups.push(async () => {
    await loop.close();
    await bulk.close();
    await rt.close();
    await deleteKeys(redis, prefix);
  });
  return { config, loop, clock, preempted, bulk, rt };
}

/** A ready worker's heartbeat: `bulk` slots of which `running` busy, and `n` real-time samples at `ms`. */
function heartbeat(
  env: Env,
  id: string,
  o: { bulk: number; running: number; ms?: number; n?: number; pendingMs?: number },
): Heartbeat {
  const firstToken = emptyCounts();
  if (o.ms !== undefined) firstToken[bucketOf(o.ms)] = o.n ?? 50;
  return {
    workerId: id,
    pool: 'p',
    host: 'h',
    pid: 1,
    backend: 'echo',
    lanes: [
      { name: 'realtime', concurrency: 8, inFlight: 0 },
      { name: 'bulk', concurrency: o.bulk, inFlight: o.running },
    ],
    state: 'ready',
    realtime: { windowMs: 10_000, firstToken, queueWait: emptyCounts(), oldestPendingMs: o.pendingMs ?? 0 },
    startedAt: env.clock.now - 60_000,
    seenAt: env.clock.now,
    expiresAt: env.clock.now + 6000,
  };
}

async function beat(env: Env, ...hbs: Heartbeat[]): Promise<void> {
  const key = workersKey(env.config.redis.prefix, 'p');
  for (const hb of hbs) await redis.hset(key, hb.workerId, JSON.stringify(hb));
}

async function pass(env: Env): Promise<BudgetExplanation> {
  const [e] = await env.loop.pass(7);
  return e!;
}

describe('bulk budget pass', () => {
  it('gives bulk every slot with no real-time load, halves it on a miss, preempts when far over', async () => {
    const env = setup();
    await beat(env, heartbeat(env, 'w1', { bulk: 4, running: 4 }), heartbeat(env, 'w2', { bulk: 4, running: 4 }));
    let e = await pass(env);
    expect(e.decision).toMatchObject({ budget: 8, reason: 'no_realtime_load' });
    expect(await env.bulk.getGlobalConcurrency()).toBeNull(); // every slot: no cap at all

    // p99 ≈ 300 ms against 200: over the objective, under twice it: halve, no preemption.
    await beat(
      env,
      heartbeat(env, 'w1', { bulk: 4, running: 4, ms: 300 }),
      heartbeat(env, 'w2', { bulk: 4, running: 4, ms: 300 }),
    );
    e = await pass(env);
    expect(e.decision).toMatchObject({ budget: 4, previous: 8, reason: 'objective_missed', preempt: 0 });
    expect(await env.bulk.getGlobalConcurrency()).toBe(4);
    expect(env.preempted).toEqual([]);

    // Within the hold the budget stays, whatever the window says.
    env.clock.now += 1000;
    await beat(
      env,
      heartbeat(env, 'w1', { bulk: 4, running: 2, ms: 900 }),
      heartbeat(env, 'w2', { bulk: 4, running: 2, ms: 900 }),
    );
    expect((await pass(env)).decision).toMatchObject({ budget: 4, reason: 'holding_after_decrease' });

    // After it, far over (p99 ≈ 900 ms > 2 × 200): halve and ask the chunks above the budget to yield.
    env.clock.now += 3000;
    await beat(
      env,
      heartbeat(env, 'w1', { bulk: 4, running: 2, ms: 900 }),
      heartbeat(env, 'w2', { bulk: 4, running: 2, ms: 900 }),
    );
    e = await pass(env);
    expect(e.decision).toMatchObject({ budget: 2, reason: 'objective_missed', preempt: 2 });
    expect(env.preempted).toEqual([{ pool: 'p', count: 2, reason: expect.stringContaining('objective 200 ms') }]);

    // The explanation is where `interfleet scheduler explain` reads it.
    const stored = JSON.parse(
      (await redis.get(explainKey(env.config.redis.prefix, 'budget', 'p')))!,
    ) as BudgetExplanation;
    expect(stored).toMatchObject({
      pool: 'p',
      epoch: 7,
      objectiveMs: 200,
      decision: { budget: 2 },
      workers: { ready: 2 },
    });
  });

  it('cuts the budget for a real-time backlog older than the objective, even with too few samples', async () => {
    const env = setup();
    await beat(env, heartbeat(env, 'w1', { bulk: 6, running: 6 }));
    await env.rt.add('rt', { x: 1 }, { timestamp: env.clock.now - 250 });
    const e = await pass(env);
    expect(e.decision).toMatchObject({ budget: 3, reason: 'realtime_backlog' });
    expect(e.decision.observed).toMatchObject({ realtimeWaiting: 1, oldestWaitingMs: 250 });
    expect(e.realtime.waiting).toBe(1);
  });

  it('cuts the budget for a running request that has waited past the objective for its first token', async () => {
    const env = setup();
    // Too slow to finish within the window (no samples), nothing queued: only the worker sees it.
    await beat(env, heartbeat(env, 'w1', { bulk: 8, running: 8, pendingMs: 900 }));
    const e = await pass(env);
    expect(e.decision).toMatchObject({ budget: 4, reason: 'realtime_backlog', preempt: 4 });
    expect(e.decision.observed).toMatchObject({ realtimeWaiting: 0, oldestWaitingMs: 900, samples: 0 });
  });

  it('ignores draining and dead workers when counting slots', async () => {
    const env = setup();
    const draining = { ...heartbeat(env, 'w2', { bulk: 4, running: 1 }), state: 'draining' as const };
    const dead = { ...heartbeat(env, 'w3', { bulk: 4, running: 1 }), expiresAt: env.clock.now - 1 };
    await beat(env, heartbeat(env, 'w1', { bulk: 4, running: 1 }), draining, dead);
    const e = await pass(env);
    expect(e.decision).toMatchObject({ budget: 4, reason: 'no_realtime_load' });
    expect(e.workers).toEqual({ ready: 1, draining: 1 });
  });

  it('holds a real BullMQ worker to the budget: at most `budget` bulk jobs run at once', async () => {
    const env = setup();
    const prefix = env.config.redis.prefix;
    await beat(env, heartbeat(env, 'w1', { bulk: 6, running: 6, ms: 300 }));
    env.loop.reset();
    expect((await pass(env)).decision).toMatchObject({ budget: 3 }); // 6 → 3
    expect(await env.bulk.getGlobalConcurrency()).toBe(3);
    let running = 0;
    let peak = 0;
    let done = 0;
    const worker = new Worker(
      queueName('bulk', 'p'),
      async () => {
        peak = Math.max(peak, ++running);
        await new Promise((r) => setTimeout(r, 30));
        running--;
        done++;
      },
      { connection: redis.duplicate({ maxRetriesPerRequest: null }), prefix, concurrency: 6 },
    );
    cleanups.push(() => worker.close());
    await env.bulk.addBulk(Array.from({ length: 12 }, (_, i) => ({ name: 'chunk', data: { i } })));
    await until(async () => (done === 12 ? true : undefined), 10_000);
    expect(peak).toBe(3);
  });
});
