/**
 * One gpu-worker process: the backend for its pool, the lanes that feed it
 * (real-time, and bulk and training when the pool gives them slots), heartbeats,
 * cancellation, and a small HTTP server for /metrics and probes. The lanes
 * share the backend. Lifecycle: starting → ready → draining → closed.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { BatchStore } from '../common/batch/batch-state.ts';
import { TrainingStore } from '../common/training/training-state.ts';
import type { Heartbeat } from '../common/contracts/heartbeat.ts';
import type { Config, PoolConfig } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import { startOtlpMetrics } from '../common/otlp-metrics.ts';
import { startProbeServer } from '../common/probe-server.ts';
import { closeRedis, createRedis } from '../common/redis.ts';
import { checkEviction } from '../common/redis-eviction.ts';
import { createStorage } from '../common/storage/index.ts';
import { cancelChannel } from '../common/topology.ts';
import type { ModelBackend } from './backends/backend.ts';
import { createBackend } from './backends/registry.ts';
import { withTrainedModels } from './backends/trained-sentiment.ts';
import { TrainedModelCache } from './trained-model-cache.ts';
import { FinishError, runFinishJob } from './training/finish-job.ts';
import { TrainedModelRegistry } from '../common/training/trained-model-registry.ts';
import { TrainingResultsStore } from '../common/training/training-results.ts';
import { UnrecoverableError } from 'bullmq';
import { startBulkLane } from './bulk/bulk-lane.ts';
import { startHeartbeat } from './heartbeat.ts';
import { createWorkerMetrics } from './metrics.ts';
import { startRealtimeLane, type Lane } from './realtime-lane.ts';
import { advertisedHost } from './training/rendezvous.ts';
import { startTrainingLane } from './training/training-lane.ts';
import { createRankRunner } from './training/runners/registry.ts';
import { ReplyWriter } from './reply-writer.ts';
import { WorkMeter } from './work-window.ts';

export interface WorkerOptions {
  logger: Logger;
  /** Use this backend instead of the configured one (tests, benchmarks). */
  backend?: ModelBackend;
}

export interface RunningWorker {
  readonly workerId: string;
  readonly pool: PoolConfig;
  /** Where /metrics is served, if enabled. */
  readonly metricsUrl: string | undefined;
  state(): Heartbeat['state'] | 'closed';
  /** Drains: stop taking jobs, finish in-flight ones within the grace period, exit. */
  close(graceMs?: number): Promise<void>;
}

export async function startWorker(config: Config, opts: WorkerOptions): Promise<RunningWorker> {
  const pool = config.pools.find((p) => p.name === config.worker.pool) ?? config.pools[0]!;
  const workerId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const logger = opts.logger.child({ role: 'gpu-worker', pool: pool.name, workerId });
  let state: Heartbeat['state'] | 'closed' = 'starting';

  const concurrency = pool.lanes.realtime.concurrency;
  const connection = createRedis(config.redis, 'worker', { connectionName: `worker:${workerId}` });
  const registry = new TrainedModelRegistry(connection, config.redis.prefix);
  // One set of storage clients for every lane and the model cache (the cloud SDKs hold connections and tokens).
  const storage = createStorage(config.storage);
  // Sentiment requests naming a trained model are served beside the pool's backend (trained-sentiment.ts).
  const backend = withTrainedModels(
    opts.backend ?? (await createBackend(pool, { concurrency })),
    new TrainedModelCache({
      registry,
      storage,
      capacity: config.worker.trainedModelCacheSize,
      logger,
    }),
  );
  const replyRedis = createRedis(config.redis, 'worker', { connectionName: `worker-replies:${workerId}` });
  const subscriber = createRedis(config.redis, 'blocking', { connectionName: `worker-cancel:${workerId}` });
  for (const client of [connection, replyRedis, subscriber]) {
    client.on('error', (err: Error) => logger.debug({ err }, 'redis connection error'));
  }
  try {
    await checkEviction(connection, config.redis.evictionCheck, logger);
  } catch (err) {
    for (const client of [connection, replyRedis, subscriber]) client.disconnect();
    await backend.close();
    throw err;
  }
  const metrics = createWorkerMetrics({ role: 'gpu-worker' });
  // Beside /metrics when metrics.otlp.endpoint is set: the same registry over OTLP.
  const otlp = startOtlpMetrics(config.metrics.otlp, { role: 'gpu-worker', registries: [metrics.registry], logger });
  // One per worker: both lanes share the engine, so "full" and its units are the worker's.
  const work = new WorkMeter(config.worker.latencyWindowMs);

  /** Beats at once; set when the heartbeat starts (below): a rank may start before. */
  const beatSoon: { now?: () => void } = {};
  const lanes: Lane[] = [
    startRealtimeLane({
      prefix: config.redis.prefix,
      pool: pool.name,
      workerId,
      concurrency,
      fetchers: pool.lanes.realtime.fetchers,
      latencyWindowMs: config.worker.latencyWindowMs,
      connection,
      backend,
      replies: new ReplyWriter(replyRedis),
      metrics,
      work,
      logger,
    }),
  ];
  // Bulk concurrency 0: this pool's workers serve real-time only.
  if (pool.lanes.bulk.concurrency > 0) {
    lanes.push(
      startBulkLane({
        prefix: config.redis.prefix,
        pool: pool.name,
        workerId,
        settings: pool.lanes.bulk,
        connection,
        backend,
        storage,
        store: new BatchStore(connection, config.redis.prefix),
        metrics,
        work,
        logger,
      }),
    );
  }

  // Training concurrency 0: no training lane.
  if (pool.lanes.training.concurrency > 0) {
    const trainingStore = new TrainingStore(connection, config.redis.prefix);
    const training = startTrainingLane({
      prefix: config.redis.prefix,
      pool: pool.name,
      workerId,
      concurrency: pool.lanes.training.concurrency,
      programs: pool.lanes.training.programs,
      declaredEnv: pool.lanes.training.env,
      settings: pool.lanes.training,
      advertiseHost: advertisedHost(pool.lanes.training.advertiseHost, process.env),
      runner: createRankRunner(pool.lanes.training.runner, { logger, env: process.env }),
      connection,
      storage,
      store: trainingStore,
      logger,
      finish: (job, signal) =>
        runFinishJob(
          {
            storage,
            store: trainingStore,
            results: new TrainingResultsStore(connection, config.redis.prefix),
            registry,
            logger,
            now: Date.now,
          },
          job,
          signal,
        ).catch((err: unknown) => {
          throw err instanceof FinishError ? new UnrecoverableError(err.message) : err;
        }),
      onReduced: (seconds) => metrics.trainingReduceSeconds.observe({ pool: pool.name }, seconds),
      // A rank that starts or ends is told at once (the leader admits on the heartbeats).
      onRanksChanged: () => beatSoon.now?.(),
    });
    lanes.push(training);
  }

  const channel = cancelChannel(config.redis.prefix);
  subscriber.on('message', (ch: string, requestId: string) => {
    if (ch === channel) for (const lane of lanes) lane.cancel(requestId);
  });
  await subscriber.subscribe(channel);

  const heartbeat = startHeartbeat({
    redis: connection,
    prefix: config.redis.prefix,
    pool: pool.name,
    workerId,
    backend: backend.kind,
    lanes: () => lanes,
    state: () => (state === 'closed' ? 'draining' : state),
    work,
    everyMs: config.worker.heartbeatMs,
    ttlMs: config.worker.heartbeatTtlMs,
    logger,
  });
  beatSoon.now = () => void heartbeat.beat().catch((err: unknown) => logger.debug({ err }, 'heartbeat not delivered'));
  // In Kubernetes (the downward API set POD_NAME): scale-in removes the idlest pods first. Loaded
  // only there: importing @kubernetes/client-node cost a process here 401 ms and +76.9 MiB RSS
  // (`node -e` timing `import('@kubernetes/client-node')` and process.memoryUsage().rss around it).
  const deletionCost =
    process.env.POD_NAME && process.env.POD_NAMESPACE
      ? (await import('./pod-deletion-cost.ts')).startPodDeletionCost({
          lanes: () => lanes,
          draining: () => state === 'draining' || state === 'closed',
          everyMs: config.worker.heartbeatMs,
          logger,
        })
      : { update: () => undefined, stop: async () => undefined };

  const http = await startProbeServer({
    host: config.worker.metricsHost,
    port: config.worker.metricsPort,
    registry: metrics.registry,
    state: () => state,
    ready: () => state === 'ready' && connection.status === 'ready',
  });
  state = 'ready';
  await heartbeat.beat();
  logger.info(
    { backend: backend.kind, concurrency, bulk: pool.lanes.bulk.concurrency, metrics: http.url },
    'gpu-worker ready',
  );

  let closing: Promise<void> | undefined;
  return {
    workerId,
    pool,
    metricsUrl: http.url,
    state: () => state,
    close(graceMs = config.worker.shutdownGraceMs) {
      closing ??= (async () => {
        state = 'draining';
        await heartbeat.beat();
        deletionCost.update();
        logger.info({ graceMs }, 'draining');
        await Promise.all(lanes.map((l) => l.close(graceMs)));
        await Promise.all([heartbeat.stop(), deletionCost.stop()]);
        await backend.close();
        await http.app?.close();
        await otlp?.close();
        await Promise.all([closeRedis(subscriber), closeRedis(replyRedis), closeRedis(connection)]);
        state = 'closed';
        logger.info('gpu-worker closed');
      })();
      return closing;
    },
  };
}
