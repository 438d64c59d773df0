/**
 * The leader's autoscaling pass against a real Redis: real-time jobs waiting in `rt.<pool>` (as the
 * producer enqueues them), heartbeats in the pool's workers hash (as workers write them), and the
 * decision handed to a recording actuator (the real ones have their own tests), explained under
 * explainKey(prefix, 'autoscale', pool) and served to KEDA through demand(). Time moves through the
 * injected clock, never by sleeping. Each test has its own key prefix and its own loop connection.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../common/config.ts';
import { autoscaleExplanationSchema, type AutoscaleExplanation } from '../../common/contracts/explain.ts';
import type { Heartbeat } from '../../common/contracts/heartbeat.ts';
import { REALTIME_JOB_NAME, type RealtimeJob } from '../../common/contracts/realtime.ts';
import { emptyCounts } from '../../common/latency-window.ts';
import { silentLogger } from '../../common/logger.ts';
import { explainKey, inboxKey, queueName, workersKey } from '../../common/topology.ts';
import type { Actuator, ReplicaCount } from '../../scheduler/autoscaler/actuators/actuator.ts';
import { createDryRunActuator } from '../../scheduler/autoscaler/actuators/dry-run.ts';
import { standbyDemand } from '../../scheduler/autoscaler/standby-demand.ts';
import { AutoscaleLoop, busySlots } from '../../scheduler/autoscaler/autoscale-loop.ts';
import { PolicySource } from '../../scheduler/autoscaler/policy-source.ts';
import { createSchedulerMetrics, type SchedulerMetrics } from '../../scheduler/metrics.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

const POOL = 'p';
const EPOCH = 7;

let redis: Redis;
const cleanups: (() => Promise<void>)[] = [];
beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => redis.disconnect());

/** An actuator that applies nothing: it reports the count it is set to and records what it is asked. */
class RecordingActuator implements Actuator {
  readonly kind = 'kubernetes' as const;
  readonly calls: { pool: string; replicas: number; busy: Map<string, number> }[] = [];
  /** Thrown by scale() when set. */
  failWith: Error | undefined;
  closed = false;
  constructor(public replicas: ReplicaCount) {}
  async observe(): Promise<ReplicaCount> {
    return { ...this.replicas };
  }
  async scale(pool: string, replicas: number, busy: ReadonlyMap<string, number>): Promise<void> {
    this.calls.push({ pool, replicas, busy: new Map(busy) });
    if (this.failWith) throw this.failWith;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

interface Env {
  config: Config;
  prefix: string;
  loop: AutoscaleLoop;
  /** The loop's own connection (a test may break it). */
  loopRedis: Redis;
  clock: { now: number };
  metrics: SchedulerMetrics;
  rt: Queue;
}

function setup(autoscale: string, actuator: (env: Pick<Env, 'loopRedis' | 'prefix' | 'clock'>) => Actuator): Env {
  const config = testConfig(`
pools:
  - name: ${POOL}
    backend: echo
    firstTokenObjectiveMs: 60000
    autoscale: ${autoscale}
`);
  const prefix = config.redis.prefix;
  const clock = { now: Date.now() };
  const loopRedis = redis.duplicate();
  const metrics = createSchedulerMetrics({});
  const logger = silentLogger();
  const policies = new PolicySource({ pools: config.pools, env: {}, logger, metrics });
  const loop = new AutoscaleLoop({
    redis: loopRedis,
    prefix,
    policies: () => policies.current(),
    actuator: actuator({ loopRedis, prefix, clock }),
    quantile: config.scheduler.balance.quantile,
    chunkLines: config.batch.chunkLines,
    training: () => undefined,
    metrics,
    logger,
    now: () => clock.now,
  });
  const rt = new Queue(queueName('rt', POOL), { connection: redis, prefix });
  cleanups.push(async () => {
    await loop.close();
    await rt.close();
    await deleteKeys(redis, prefix);
    loopRedis.disconnect();
  });
  return { config, prefix, loop, loopRedis, clock, metrics, rt };
}

/** A ready worker's heartbeat as of the test clock, with `inFlight` real-time requests running. */
function heartbeat(env: Env, workerId: string, inFlight = 0, state: Heartbeat['state'] = 'ready'): Heartbeat {
  return {
    workerId,
    pool: POOL,
    host: 'h',
    pid: 1,
    backend: 'echo',
    lanes: [
      { name: 'realtime', concurrency: 4, inFlight },
      { name: 'bulk', concurrency: 1, inFlight: 0 },
    ],
    state,
    realtime: { windowMs: 10_000, firstToken: emptyCounts(), queueWait: emptyCounts(), oldestPendingMs: 0 },
    work: {
      windowMs: 10_000,
      realtime: { requests: 0, units: 0 },
      bulk: { records: 0, units: 0 },
      full: { ms: 0, units: 0 },
    },
    startedAt: env.clock.now - 60_000,
    seenAt: env.clock.now,
    expiresAt: env.clock.now + 6000,
  };
}

async function beat(env: Env, ...hbs: Heartbeat[]): Promise<Heartbeat[]> {
  for (const hb of hbs) await redis.hset(workersKey(env.prefix, POOL), hb.workerId, JSON.stringify(hb));
  return hbs;
}

/** `n` real-time jobs as the producer enqueues them (job id = request id, one attempt). */
async function enqueue(env: Env, n: number, opts: { timestamp?: number } = {}): Promise<void> {
  const now = Date.now();
  await env.rt.addBulk(
    Array.from({ length: n }, () => {
      const job: RealtimeJob = {
        requestId: randomUUID(),
        replyTo: inboxKey(env.prefix, 'test'),
        deadlineAt: now + 30_000,
        enqueuedAt: opts.timestamp ?? now,
        stream: false,
        input: { task: 'sentiment', text: 'a fine day' },
      };
      return {
        name: REALTIME_JOB_NAME,
        data: job,
        opts: { jobId: job.requestId, attempts: 1, ...(opts.timestamp !== undefined && { timestamp: opts.timestamp }) },
      };
    }),
  );
}

async function explanation(env: Env): Promise<AutoscaleExplanation> {
  const raw = await redis.get(explainKey(env.prefix, 'autoscale', POOL));
  expect(raw).not.toBeNull();
  return autoscaleExplanationSchema.parse(JSON.parse(raw!));
}

async function onlyDecision(env: Env) {
  const decisions = await env.loop.pass(EPOCH);
  expect(decisions).toHaveLength(1);
  return decisions[0]!;
}

async function metric(m: { get(): Promise<{ values: { labels: object; value: number }[] }> }, labels: object) {
  const found = (await m.get()).values.find((v) =>
    Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x),
  );
  return found?.value;
}

// Capacity 1 unit/s per replica (0.7 at the default target utilization); a backlog drains over
// max(startupMs, 10 s) = 10 s, each waiting request one unit: 20 waiting → 2 units/s → 3 replicas.
const SCALE_UP = '{ minReplicas: 1, maxReplicas: 4, startupMs: 10000, capacityHint: 1 }';

describe('autoscaling pass', () => {
  it('scales a pool with waiting real-time work up, explains why and serves the demand', async () => {
    let actuator!: RecordingActuator;
    const env = setup(SCALE_UP, () => (actuator = new RecordingActuator({ desired: 1, ready: 1 })));
    expect(env.loop.demand(POOL)).toBeUndefined();
    const hbs = await beat(env, heartbeat(env, 'w1', 2));
    await enqueue(env, 20);

    const d = await onlyDecision(env);
    expect(d).toMatchObject({ pool: POOL, previous: 1, desired: 3, recommendation: 3, reason: 'realtime_forecast' });
    expect(d.desired).toBeGreaterThan(d.previous);
    expect(d.parts).toMatchObject({ realtime: 3, bulk: 0, training: 0, running: 0, floor: 0 });
    expect(d.realtime.nowUnitsPerSecond).toBeCloseTo(2);
    expect(actuator.calls).toEqual([{ pool: POOL, replicas: 3, busy: busySlots(hbs) }]);
    expect(actuator.calls[0]!.busy).toEqual(new Map([['w1', 2]]));

    const e = await explanation(env);
    expect(e).toMatchObject({
      pool: POOL,
      at: env.clock.now,
      epoch: EPOCH,
      actuator: 'kubernetes',
      replicas: { desired: 3, ready: 1, min: 1, max: 4 },
      decision: { at: env.clock.now, desired: 3, previous: 1, recommendation: 3, reason: 'realtime_forecast' },
      parts: { realtime: 3, bulk: 0, training: 0, running: 0, floor: 0, costCap: null },
      capacity: { unitsPerSecond: 1, source: 'hint' },
      bulk: { neededUnitsPerSecond: 0, tightest: null },
      history: [{ desired: 3, previous: 1, reason: 'realtime_forecast' }],
    });
    expect(e.decision.missing).toBeUndefined();
    expect(e.actuatorError).toBeUndefined();
    const ttl = await redis.pttl(explainKey(env.prefix, 'autoscale', POOL));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);

    expect(env.loop.demand(POOL)).toEqual({ desired: 3, active: true });
    expect(env.loop.demand('other')).toBeUndefined();
    expect(await metric(env.metrics.autoscalerDesired, { pool: POOL })).toBe(3);
    expect(await metric(env.metrics.autoscalerReady, { pool: POOL })).toBe(1);
    expect(await metric(env.metrics.autoscalerDemand, { pool: POOL, part: 'realtime' })).toBe(3);
    expect(await metric(env.metrics.autoscalerDecisions, { pool: POOL, reason: 'realtime_forecast' })).toBe(1);

    // The pool got its replicas: the same backlog asks for nothing more, and the actuator is not called.
    actuator.replicas = { desired: 3, ready: 1 };
    env.clock.now += 5000;
    await beat(env, heartbeat(env, 'w1', 2));
    expect(await onlyDecision(env)).toMatchObject({ previous: 3, desired: 3, reason: 'realtime_forecast' });
    expect(actuator.calls).toHaveLength(1);
    expect((await explanation(env)).history).toHaveLength(1);
  });

  it('caps at maxReplicas, with the dry-run actuator counting replicas from heartbeats', async () => {
    const env = setup(SCALE_UP, () => createDryRunActuator());
    await beat(env, heartbeat(env, 'w1'), heartbeat(env, 'w2', 0, 'starting'));
    await enqueue(env, 40); // 4 units/s → 6 replicas wanted
    expect(await onlyDecision(env)).toMatchObject({
      previous: 2,
      desired: 4,
      recommendation: 4,
      reason: 'max_replicas',
      parts: { realtime: 6 },
    });
    expect(await explanation(env)).toMatchObject({
      actuator: 'dry-run',
      replicas: { desired: 4, ready: 1, min: 1, max: 4 },
      decision: { reason: 'max_replicas' },
    });
    expect(env.loop.demand(POOL)).toEqual({ desired: 4, active: true });
  });

  it("serves a standby the leader's decision from its record, until the record is too old", async () => {
    const env = setup(SCALE_UP, () => createDryRunActuator());
    const standby = standbyDemand({ redis, prefix: env.prefix, everyMs: 5000, now: () => env.clock.now });
    expect(await standby(POOL)).toBeUndefined(); // no leader has decided yet
    await beat(env, heartbeat(env, 'w1'), heartbeat(env, 'w2', 0, 'starting'));
    await enqueue(env, 40);
    await onlyDecision(env);
    expect(await standby(POOL)).toEqual({ desired: 4, active: true });
    expect(await standby(POOL)).toEqual(env.loop.demand(POOL));
    env.clock.now += 15_001; // three passes of 5 s missed: the leader is gone
    expect(await standby(POOL)).toBeUndefined();
  });

  it('reads the age of the oldest waiting request, not the newest', async () => {
    // Objective 2 s; one request waiting 5 s, added first (so at the tail of the wait list), then fresh ones.
    const env = setup(`{ minReplicas: 1, maxReplicas: 4, startupMs: 10000, realtime: { objectiveMs: 2000 } }`, () => {
      return new RecordingActuator({ desired: 1, ready: 1 });
    });
    await beat(env, heartbeat(env, 'w1'));
    await enqueue(env, 1, { timestamp: env.clock.now - 5000 });
    await enqueue(env, 3);
    expect(await onlyDecision(env)).toMatchObject({ previous: 1, desired: 2, reason: 'realtime_objective_miss' });
  });

  it('scales an idle pool in to minReplicas only after the scale-down window', async () => {
    let actuator!: RecordingActuator;
    const env = setup(
      '{ minReplicas: 1, maxReplicas: 4, scaleDown: { stabilizationMs: 60000, maxStep: 4 } }',
      () => (actuator = new RecordingActuator({ desired: 3, ready: 3 })),
    );
    const t0 = env.clock.now;
    const beatAll = () => beat(env, heartbeat(env, 'w1'), heartbeat(env, 'w2', 1), heartbeat(env, 'w3'));

    // A new leader counts the pool's size as a recommendation just made: no scale-in at once.
    await beatAll();
    expect(await onlyDecision(env)).toMatchObject({
      previous: 3,
      desired: 3,
      recommendation: 1,
      reason: 'stabilizing_down',
    });
    env.clock.now = t0 + 59_000;
    await beatAll();
    expect(await onlyDecision(env)).toMatchObject({ desired: 3, recommendation: 1, reason: 'stabilizing_down' });
    expect(actuator.calls).toEqual([]);
    expect(env.loop.demand(POOL)).toEqual({ desired: 3, active: true });

    // Past the window (and within one maxStep): straight to minReplicas, idlest chosen by the actuator.
    env.clock.now = t0 + 61_000;
    const hbs = await beatAll();
    expect(await onlyDecision(env)).toMatchObject({ previous: 3, desired: 1, reason: 'min_replicas' });
    expect(actuator.calls).toEqual([{ pool: POOL, replicas: 1, busy: busySlots(hbs) }]);
    expect(env.loop.demand(POOL)).toEqual({ desired: 1, active: true });
    expect(await explanation(env)).toMatchObject({
      at: t0 + 61_000,
      replicas: { desired: 1, ready: 3, min: 1, max: 4 },
      decision: { desired: 1, previous: 3, reason: 'min_replicas' },
      history: [{ at: t0 + 61_000, desired: 1, previous: 3 }],
    });
  });

  it('takes an idle pool with minReplicas 0 to zero after idleToZeroMs, inactive, and wakes it on a job', async () => {
    let actuator!: RecordingActuator;
    const env = setup(
      '{ minReplicas: 0, maxReplicas: 2, idleToZeroMs: 30000, scaleDown: { stabilizationMs: 0 } }',
      () => (actuator = new RecordingActuator({ desired: 1, ready: 1 })),
    );
    const t0 = env.clock.now;
    await beat(env, heartbeat(env, 'w1'));
    expect(await onlyDecision(env)).toMatchObject({ desired: 1, recommendation: 1 });
    expect(env.loop.demand(POOL)).toEqual({ desired: 1, active: true });

    env.clock.now = t0 + 31_000;
    await beat(env, heartbeat(env, 'w1'));
    expect(await onlyDecision(env)).toMatchObject({ previous: 1, desired: 0, reason: 'idle_to_zero' });
    expect(actuator.calls.map((c) => c.replicas)).toEqual([0]);
    expect(env.loop.demand(POOL)).toEqual({ desired: 0, active: false });

    // At zero, no heartbeats, no work: stays there, still inactive.
    actuator.replicas = { desired: 0, ready: 0 };
    await redis.del(workersKey(env.prefix, POOL));
    env.clock.now += 5000;
    expect(await onlyDecision(env)).toMatchObject({ previous: 0, desired: 0 });
    expect(env.loop.demand(POOL)).toEqual({ desired: 0, active: false });

    await enqueue(env, 1);
    env.clock.now += 5000;
    // Woken at once, whatever the scale-up window (a single request asks for one replica already).
    expect(await onlyDecision(env)).toMatchObject({ previous: 0, desired: 1, recommendation: 1 });
    expect(actuator.calls.map((c) => c.replicas)).toEqual([0, 1]);
    expect(env.loop.demand(POOL)).toEqual({ desired: 1, active: true });
  });

  it('holds when the loop’s Redis connection is gone: no actuator call, demand unchanged', async () => {
    let actuator!: RecordingActuator;
    const env = setup(SCALE_UP, () => (actuator = new RecordingActuator({ desired: 1, ready: 1 })));
    await beat(env, heartbeat(env, 'w1'));
    await enqueue(env, 20);
    expect(await onlyDecision(env)).toMatchObject({ desired: 3 });
    const written = await explanation(env);

    env.loopRedis.disconnect();
    actuator.replicas = { desired: 1, ready: 1 }; // what it says no longer matters: nothing is read
    env.clock.now += 5000;
    const d = await onlyDecision(env);
    expect(d).toMatchObject({ previous: 3, desired: 3, recommendation: 3, reason: 'hold_missing_signals' });
    expect(d.parts).toMatchObject({ realtime: 0, bulk: 0, training: 0, running: 0, floor: 0 });
    expect(actuator.calls).toHaveLength(1);
    expect(env.loop.demand(POOL)).toEqual({ desired: 3, active: true });
    expect(await metric(env.metrics.autoscalerDecisions, { pool: POOL, reason: 'hold_missing_signals' })).toBe(1);
    expect(await metric(env.metrics.autoscalerDesired, { pool: POOL })).toBe(3);
    // The record could not be written either: the last one stays, as old as it is.
    expect(await explanation(env)).toEqual(written);
  });

  it('holds and says so in the explain record when a read fails (a key of the wrong type)', async () => {
    let actuator!: RecordingActuator;
    const env = setup(SCALE_UP, () => (actuator = new RecordingActuator({ desired: 2, ready: 2 })));
    await beat(env, heartbeat(env, 'w1'), heartbeat(env, 'w2'));
    await enqueue(env, 20);
    expect(await onlyDecision(env)).toMatchObject({ previous: 2, desired: 3 });

    await redis.del(workersKey(env.prefix, POOL));
    await redis.set(workersKey(env.prefix, POOL), 'not a hash');
    env.clock.now += 5000;
    expect(await onlyDecision(env)).toMatchObject({ previous: 3, desired: 3, reason: 'hold_missing_signals' });
    expect(actuator.calls).toHaveLength(1);
    const e = await explanation(env);
    expect(e).toMatchObject({
      at: env.clock.now,
      replicas: { desired: 3, ready: 0 },
      decision: { desired: 3, previous: 3, reason: 'hold_missing_signals' },
      history: [{ desired: 3, previous: 2 }],
    });
    expect(e.decision.missing).toMatch(/^signals could not be read: WRONGTYPE/);
  });

  it('holds when replicas are ready but no worker heartbeats, whatever waits', async () => {
    let actuator!: RecordingActuator;
    const env = setup(SCALE_UP, () => (actuator = new RecordingActuator({ desired: 2, ready: 2 })));
    await enqueue(env, 40);
    expect(await onlyDecision(env)).toMatchObject({ previous: 2, desired: 2, reason: 'hold_missing_signals' });
    expect(actuator.calls).toEqual([]);
    expect((await explanation(env)).decision.missing).toBe('2 replicas ready but no worker heartbeat');
    expect(env.loop.demand(POOL)).toEqual({ desired: 2, active: true });
  });

  it('does not let a first pass that could not read make the pool look empty', async () => {
    let actuator!: RecordingActuator;
    const env = setup(
      '{ minReplicas: 1, maxReplicas: 4, scaleDown: { stabilizationMs: 60000, maxStep: 4 } }',
      () => (actuator = new RecordingActuator({ desired: 3, ready: 3 })),
    );
    await redis.set(workersKey(env.prefix, POOL), 'not a hash');
    const d = await onlyDecision(env);
    expect(d.reason).toBe('hold_missing_signals');
    expect(actuator.calls).toEqual([]);
    expect((await explanation(env)).decision.missing).toMatch(/^signals could not be read: WRONGTYPE/);
    // No decision to serve yet: KEDA is told to retry rather than given 0 replicas, inactive.
    expect(env.loop.demand(POOL)).toBeUndefined();
    expect(await metric(env.metrics.autoscalerDesired, { pool: POOL })).toBeUndefined();
    expect(await metric(env.metrics.autoscalerDecisions, { pool: POOL, reason: 'hold_missing_signals' })).toBe(1);

    // Readable again: the pool's 3 replicas start the term's stabilization window, as after any failover.
    await redis.del(workersKey(env.prefix, POOL));
    env.clock.now += 5000;
    await beat(env, heartbeat(env, 'w1'), heartbeat(env, 'w2'), heartbeat(env, 'w3'));
    expect(await onlyDecision(env)).toMatchObject({ previous: 3, desired: 3, reason: 'stabilizing_down' });
    expect(actuator.calls).toEqual([]);
    expect(env.loop.demand(POOL)).toEqual({ desired: 3, active: true });
  });

  it('reports an actuator that fails in the explain record and the error metric', async () => {
    let actuator!: RecordingActuator;
    const env = setup(SCALE_UP, () => (actuator = new RecordingActuator({ desired: 1, ready: 1 })));
    actuator.failWith = new Error('deployments/scale refused (HTTP 403)');
    await beat(env, heartbeat(env, 'w1'));
    await enqueue(env, 20);
    expect(await onlyDecision(env)).toMatchObject({ desired: 3 });
    expect(actuator.calls).toHaveLength(1);
    expect(await explanation(env)).toMatchObject({ actuatorError: 'deployments/scale refused (HTTP 403)' });
    expect(await metric(env.metrics.autoscalerActuatorErrors, { pool: POOL })).toBe(1);

    // Retried next pass (the actuator still reports 1).
    actuator.failWith = undefined;
    env.clock.now += 5000;
    await beat(env, heartbeat(env, 'w1'));
    await onlyDecision(env);
    expect(actuator.calls.map((c) => c.replicas)).toEqual([3, 3]);
    expect((await explanation(env)).actuatorError).toBeUndefined();
  });

  it('closes its actuator, and a pass with no policy does nothing', async () => {
    let actuator!: RecordingActuator;
    const env = setup(SCALE_UP, () => (actuator = new RecordingActuator({ desired: 1, ready: 1 })));
    await env.loop.close();
    expect(actuator.closed).toBe(true);
    const none = new AutoscaleLoop({
      redis: env.loopRedis,
      prefix: env.prefix,
      policies: () => [],
      actuator,
      quantile: 0.99,
      chunkLines: 5000,
      training: () => undefined,
      metrics: env.metrics,
      logger: silentLogger(),
      now: () => env.clock.now,
    });
    expect(await none.pass(EPOCH)).toEqual([]);
    expect(await redis.exists(explainKey(env.prefix, 'autoscale', POOL))).toBe(0);
  });
});
