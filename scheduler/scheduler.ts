/**
 * The scheduler role. Every replica campaigns for the leader lease; only the
 * leader runs the control loops: heartbeat bookkeeping (removing the entries
 * of workers whose heartbeats expired), the cron schedules (synced once per
 * leadership), the batch pass (admission, expiry, finalisation: see
 * batch-loop.ts), the training pass (gang admission: training-loop.ts, on
 * the batch pass's period, and woken at once when a job of `train.<pool>`
 * ends) and the balance pass (each pool's bulk budget from
 * its real-time latency: budget-loop.ts) and the autoscaling pass (each
 * pool's replicas from its queues, heartbeats and objectives:
 * autoscaler/autoscale-loop.ts, applied by the configured actuator).
 *
 * Each leader pass has its own timer and all of them feed one serial chain,
 * so no two passes ever overlap and each runs once per period: housekeeping
 * (heartbeats, cron) every scheduler.renewEveryMs, the batch pass every
 * batch.admitEveryMs, the balance pass every scheduler.balanceEveryMs, the
 * autoscaling pass every autoscaler.everyMs (after the training pass, whose
 * gang demand it reads). The
 * lease is renewed on a timer of its own, outside the chain (see below); on
 * winning it, the passes are queued at once. tick() runs the lease and then
 * every pass in order: at start-up, and in tests whose timers are slowed.
 *
 * Every replica serves /metrics, /healthz and /readyz (ready = leading or a
 * healthy standby) on scheduler.metricsPort.
 */
import { randomUUID } from 'node:crypto';
import { QueueEvents } from 'bullmq';
import { hostname } from 'node:os';
import type { Config } from '../common/config.ts';
import { expiredWorkerIds } from '../common/contracts/heartbeat.ts';
import type { Logger } from '../common/logger.ts';
import { requestPreemption } from '../common/preemption.ts';
import { startOtlpMetrics } from '../common/otlp-metrics.ts';
import { startProbeServer } from '../common/probe-server.ts';
import { closeRedis, createRedis, type RedisClient } from '../common/redis.ts';
import { checkEviction } from '../common/redis-eviction.ts';
import { createStorage, type Storage } from '../common/storage/index.ts';
import { batchControlQueue, queueName, workersKey } from '../common/topology.ts';
import { BatchLoop } from './batch-loop.ts';
import { BudgetLoop } from './budget-loop.ts';
import { createSchedulerMetrics } from './metrics.ts';
import { fairShare } from './fair-share.ts';
import { syncCronSchedules } from './cron-schedules.ts';
import { removeWorkers, StaleLeaderError } from './fenced-writes.ts';
import { LeaderLease } from './leader-lease.ts';
import { TrainingLoop } from './training-loop.ts';
import { TrainingFinisher } from './training-finisher.ts';
import { AutoscaleLoop } from './autoscaler/autoscale-loop.ts';
import type { LocalFleet } from './autoscaler/actuators/local.ts';
import { createActuator } from './autoscaler/actuators/registry.ts';
import { startKedaScaler, type KedaScaler } from './autoscaler/keda-scaler.ts';
import { standbyDemand } from './autoscaler/standby-demand.ts';
import { PolicySource } from './autoscaler/policy-source.ts';

/** After a failed cron sync (Redis, or a schedule BullMQ refuses), the next try waits this long. */
const cronRetryMs = 60_000;

export interface RunningScheduler {
  readonly candidateId: string;
  /** This replica's /metrics URL (undefined with scheduler.metricsPort -1). */
  readonly metricsUrl: string | undefined;
  /** The KEDA external scaler's port (undefined with autoscaler.keda.port -1). */
  readonly kedaPort: number | undefined;
  /** The epoch this replica leads with, or 0 when it is a standby. */
  epoch(): number;
  /** One pass of the loop (tests call it to avoid waiting for the timer). */
  tick(): Promise<void>;
  close(): Promise<void>;
}

export interface SchedulerOptions {
  logger: Logger;
  now?: () => number;
  /** Where batch plans are read; createStorage(config.storage) by default. */
  storage?: Pick<Storage, 'read'>;
  /** The launcher's worker processes (`npm start`): the `local` actuator scales them. */
  localFleet?: LocalFleet;
  /** Where policy changes are read from (INTERFLEET_CONFIG); process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export async function startScheduler(config: Config, opts: SchedulerOptions): Promise<RunningScheduler> {
  const now = opts.now ?? Date.now;
  const candidateId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const logger = opts.logger.child({ role: 'scheduler', candidateId });
  const redis = createRedis(config.redis, 'worker', { connectionName: `scheduler:${candidateId}` });
  try {
    await checkEviction(redis, config.redis.evictionCheck, logger);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const prefix = config.redis.prefix;
  const lease = new LeaderLease(redis, prefix, candidateId, config.scheduler.leaseTtlMs);
  const batchLoop = new BatchLoop({
    redis,
    prefix,
    storage: opts.storage ?? createStorage(config.storage),
    policy: {
      windowPerPool: config.batch.windowPerPool,
      share: fairShare({
        weights: Object.fromEntries(Object.entries(config.batch.tenants).map(([t, { weight }]) => [t, weight])),
        ...config.batch.deadlineBoost,
      }),
    },
    logger,
    now,
    budgets: () => budgetLoop.budgets(),
  });
  const metrics = createSchedulerMetrics({ role: 'scheduler' });
  const budgetLoop = new BudgetLoop({
    redis,
    prefix,
    pools: config.pools,
    balance: config.scheduler.balance,
    metrics,
    logger,
    now,
    preempt: (pool, count, reason) => requestPreemption(redis, prefix, pool, count, reason, now()),
  });
  const finisher = new TrainingFinisher({
    redis,
    prefix,
    pools: config.pools,
    webhook: config.training.webhook,
    metrics,
    logger,
    now,
  });
  const trainingLoop = new TrainingLoop({
    redis,
    prefix,
    pools: config.pools,
    metrics,
    logger,
    now,
    onEnded: (gang) => finisher.begin(gang),
  });
  // Created (and a misconfigured actuator refused) before the lease is campaigned for.
  const actuator = await createActuator(config.autoscaler, {
    redis,
    prefix,
    logger,
    now,
    ...(opts.localFleet && { localFleet: opts.localFleet }),
  }).catch(async (err: unknown) => {
    await closeRedis(redis);
    throw err;
  });
  const policies = new PolicySource({ pools: config.pools, env: opts.env ?? process.env, logger, metrics });
  const autoscaleLoop = new AutoscaleLoop({
    redis,
    prefix,
    policies: () => policies.current(),
    actuator,
    quantile: config.scheduler.balance.quantile,
    chunkLines: config.batch.chunkLines,
    training: (pool) => trainingLoop.gangDemand(pool),
    metrics,
    logger,
    now,
  });
  const autoscaled = config.pools.filter((p) => p.autoscale).map((p) => p.name);
  logger.info(
    { actuator: actuator.kind, pools: autoscaled, everyMs: config.autoscaler.everyMs },
    autoscaled.length > 0 ? 'autoscaling pools' : 'no pool has an autoscale policy; the fleet keeps its size',
  );
  let epoch = 0;
  let cronSyncedEpoch = 0;
  let cronRetryAt = 0;

  const cleanHeartbeats = async (): Promise<void> => {
    for (const pool of config.pools) {
      const raw = await redis.hgetall(workersKey(prefix, pool.name));
      const dead = expiredWorkerIds(raw, now());
      if (dead.length === 0) continue;
      const removed = await removeWorkers(redis, prefix, pool.name, epoch, dead);
      logger.info({ pool: pool.name, removed, workers: dead }, 'removed expired worker heartbeats');
    }
  };

  const syncCron = async (): Promise<void> => {
    if (cronSyncedEpoch === epoch || now() < cronRetryAt) return;
    cronRetryAt = now() + cronRetryMs; // cleared by success; kept when this throws
    const { failed } = await syncCronSchedules(batchLoop.control(), config.batch.schedules, logger);
    if (failed.length === 0) cronSyncedEpoch = epoch;
  };

  /** Runs one leader loop; a newer leader's fence stands this replica down, other errors wait for the next pass. */
  const asLeader = async (what: string, loop: () => Promise<unknown>): Promise<void> => {
    if (epoch === 0) return;
    try {
      await loop();
    } catch (err) {
      if (err instanceof StaleLeaderError) {
        logger.warn({ epoch, loop: what }, 'a newer leader exists; standing down');
        epoch = 0;
      } else {
        logger.warn({ err, loop: what }, 'scheduler loop failed');
      }
    }
  };

  const batchPass = (): Promise<void> =>
    asLeader('batch pass', async () => {
      for (const d of await batchLoop.pass(epoch)) metrics.batchDecisions.inc({ kind: d.kind, reason: d.reason });
    });
  const balancePass = (): Promise<void> => asLeader('balance pass', () => budgetLoop.pass(epoch));
  // Training gang admission (training-loop.ts), on the batch pass's period and whenever a job of
  // train.<pool> ends (below). Then the results of ended jobs: manifest and completion webhook (training-finisher.ts).
  const trainingPass = (): Promise<void> =>
    asLeader('training pass', async () => {
      await trainingLoop.pass(epoch);
      await finisher.pass();
    });
  const autoscalePass = (): Promise<void> => asLeader('autoscaling pass', () => autoscaleLoop.pass(epoch));

  const housekeeping = async (): Promise<void> => {
    await asLeader('heartbeat bookkeeping', cleanHeartbeats);
    await asLeader('cron schedules', syncCron);
  };
  const leaderPasses = [housekeeping, batchPass, trainingPass, autoscalePass, balancePass];

  /** Renews (or campaigns for) the lease; true when this replica just became leader. */
  const renew = async (): Promise<boolean> => {
    let next = 0;
    try {
      next = await lease.tryAcquire();
    } catch (err) {
      logger.warn({ err }, 'leader lease check failed');
    }
    if (next === epoch) return false;
    if (next > 0) logger.info({ epoch: next }, 'became scheduler leader');
    else logger.warn({ epoch }, 'lost scheduler leadership');
    epoch = next;
    cronRetryAt = 0;
    budgetLoop.reset();
    trainingLoop.reset();
    autoscaleLoop.reset();
    metrics.leader.set(epoch > 0 ? 1 : 0);
    metrics.epoch.set(epoch);
    return epoch > 0;
  };

  /** Everything once, in order (start-up and tests): the lease, then every leader pass. */
  const tick = async (): Promise<void> => {
    await renew();
    for (const pass of leaderPasses) await pass();
  };

  // One chain for every pass; a timer whose pass is still queued does not queue another.
  let running: Promise<void> = Promise.resolve();
  const pending = new Set<() => Promise<void>>();
  const enqueue = (pass: () => Promise<void>): Promise<void> => {
    pending.add(pass);
    const result = running.then(() => {
      pending.delete(pass);
      return pass();
    });
    running = result.catch((err: unknown) => logger.error({ err }, 'scheduler pass failed'));
    return result;
  };
  const onTimer = (pass: () => Promise<void>) => (): void => {
    if (!pending.has(pass)) void enqueue(pass);
  };

  // The lease is renewed on its own timer, outside the chain: a slow pass (a starved CPU, a slow
  // Redis) must not hold the renewal past leaseTtlMs and hand leadership away. Passes started under
  // an epoch write with it, and fenced writes refuse a stale one.
  let renewing = false;
  const onRenewTimer = (): void => {
    if (renewing) return;
    renewing = true;
    renew()
      .then((becameLeader) => {
        // A new leader acts at once rather than at each pass's next timer.
        if (becameLeader) for (const pass of leaderPasses) onTimer(pass)();
      })
      .catch((err: unknown) => logger.error({ err }, 'lease renewal failed'))
      .finally(() => (renewing = false));
  };

  // Leader passes that BullMQ's event streams wake before their timers: one blocking connection per
  // queue, reading its events; standbys ignore them (the wake is a no-op without the lease).
  const cueEvents: { events: QueueEvents; connection: RedisClient }[] = [];
  const cueOn = (queue: string, on: readonly ('completed' | 'failed' | 'progress')[], pass: () => Promise<void>) => {
    const connection = createRedis(config.redis, 'worker', { connectionName: `scheduler-events:${candidateId}` });
    const events = new QueueEvents(queue, { connection, prefix });
    const wake = (): void => {
      if (epoch > 0) onTimer(pass)();
    };
    for (const name of on) events.on(name, wake);
    events.on('error', (err) => logger.warn({ err, queue }, 'queue events: read failed; retrying'));
    cueEvents.push({ events, connection });
  };
  for (const pool of config.pools) {
    // A pool's window is refilled as soon as one of its chunks ends, not only on the admission timer:
    // a worker that finishes chunks faster than batch.admitEveryMs would otherwise sit idle waiting
    // for its next one (bench:batch measured the timer alone capping a worker near 4,000 lines/s).
    cueOn(queueName('bulk', pool.name), ['completed', 'failed'], batchPass);
    // A training round moves on when a job of train.<pool> ends: a round's last rank leaves the gang
    // `reducing` (the pass adds its reduce), a reduce leaves it `queued` for its next round (the pass
    // admits it), a job that failed for good fails the gang. Waiting for the timer cost up to a
    // pass on each of these (bench:training); the timer stays, for everything else the pass does.
    if (pool.lanes.training.concurrency > 0)
      cueOn(queueName('train', pool.name), ['completed', 'failed'], trainingPass);
  }
  // Likewise when a plan job publishes a piece of its plan (it reports progress): the first chunks
  // are admitted while planning goes on, not up to batch.admitEveryMs later.
  cueOn(batchControlQueue, ['progress'], batchPass);

  await enqueue(tick);
  const timers = [
    setInterval(onRenewTimer, config.scheduler.renewEveryMs),
    setInterval(onTimer(housekeeping), config.scheduler.renewEveryMs),
    setInterval(onTimer(batchPass), config.batch.admitEveryMs),
    setInterval(onTimer(trainingPass), config.batch.admitEveryMs),
    setInterval(onTimer(balancePass), config.scheduler.balanceEveryMs),
    setInterval(onTimer(autoscalePass), config.autoscaler.everyMs),
  ];
  // Every replica serves the external scaler; a standby answers UNAVAILABLE (no decision this term).
  const pools = new Set(config.pools.map((p) => p.name));
  let keda: KedaScaler | undefined;
  let probes: Awaited<ReturnType<typeof startProbeServer>> | undefined;
  // Beside /metrics when metrics.otlp.endpoint is set: the same registry over OTLP.
  const otlp = startOtlpMetrics(config.metrics.otlp, { role: 'scheduler', registries: [metrics.registry], logger });

  const close = async (): Promise<void> => {
    for (const t of timers) clearInterval(t);
    await keda?.close();
    await Promise.all(cueEvents.map(({ events }) => events.close()));
    await Promise.all(cueEvents.map(({ connection }) => closeRedis(connection)));
    await running;
    await batchLoop.close();
    await trainingLoop.close();
    await finisher.close();
    await autoscaleLoop.close();
    await budgetLoop.close();
    await probes?.app?.close();
    await otlp?.close();
    await lease.release().catch(() => undefined);
    epoch = 0;
    await closeRedis(redis);
    logger.info('scheduler closed');
  };

  try {
    if (config.autoscaler.keda.port >= 0) {
      const fromLeader = standbyDemand({
        redis,
        prefix: config.redis.prefix,
        everyMs: config.autoscaler.everyMs,
        now,
      });
      keda = await startKedaScaler({
        host: config.autoscaler.keda.host,
        port: config.autoscaler.keda.port,
        // The leader answers from memory; a standby serves the leader's last decision from Redis.
        demand: (pool) => (epoch > 0 ? autoscaleLoop.demand(pool) : fromLeader(pool)),
        knownPool: (pool) => pools.has(pool),
        logger,
      });
    }
    probes = await startProbeServer({
      host: config.scheduler.metricsHost,
      port: config.scheduler.metricsPort,
      registry: metrics.registry,
      state: () => (epoch > 0 ? 'leader' : 'standby'),
      ready: () => redis.status === 'ready',
    });
  } catch (err) {
    // A port taken: nothing may keep running (or keep the lease) behind the error.
    await close();
    throw err;
  }

  return {
    candidateId,
    metricsUrl: probes.url,
    kedaPort: keda?.port,
    epoch: () => epoch,
    tick: () => enqueue(tick),
    close,
  };
}
