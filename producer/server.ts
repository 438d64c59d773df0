/**
 * The producer: the GKE front door. Wires the HTTP API, the reply inbox, the
 * queues of every pool, the Batch API and the batch control worker (planning,
 * finalisation, cron launches), Bull Board and /metrics. `startProducer`
 * returns a handle whose `close()` drains: stop accepting, finish waiting
 * replies, stop the control worker.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { BatchStore } from '../common/batch/batch-state.ts';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import { settleWithin } from '../common/process.ts';
import { closeRedis, createRedis, waitForRedis, type RedisClient } from '../common/redis.ts';
import { checkEviction } from '../common/redis-eviction.ts';
import { createStorage } from '../common/storage/index.ts';
import { batchControlQueue, inboxKey, queueDisplayName, queueName } from '../common/topology.ts';
import { BatchService } from './batch/batch-service.ts';
import { startBatchControl } from './batch/control-worker.ts';
import { BOARD_PATH, registerBoard } from './board.ts';
import { DepthMonitor } from './depth-monitor.ts';
import { FleetError } from '../common/errors.ts';
import { errorHandler, sendError } from './http-errors.ts';
import { useJsonBodyParser } from './json-body.ts';
import { createProducerMetrics } from './metrics.ts';
import { startOtlpMetrics } from '../common/otlp-metrics.ts';
import { RealtimeService } from './realtime-service.ts';
import { ReplyInbox } from './reply-inbox.ts';
import { batchRoutes } from './routes/batches.ts';
import { chatCompletionsRoute } from './routes/chat-completions.ts';
import { fleetRoutes } from './routes/fleet.ts';
import { schedulerExplainRoute } from './routes/scheduler-explain.ts';
import { inferRoute } from './routes/infer.ts';
import { trainingRoutes } from './routes/training.ts';
import { trainedModelsRoutes } from './routes/trained-models.ts';
import { TrainedModelRegistry } from '../common/training/trained-model-registry.ts';
import { trainingLogsRoutes } from './routes/training-logs.ts';
import {
  authenticate,
  decideAuth,
  loadKeyTable,
  rateLimitEnabled,
  registerRateLimit,
  type AuthDecision,
} from './auth/index.ts';

export interface RunningProducer {
  readonly app: FastifyInstance;
  /** Base URL the API listens on, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  readonly replicaId: string;
  /** Whether API keys are checked; when not, the notice to print (npm start's launcher shows it). */
  readonly auth: AuthDecision;
  close(graceMs?: number): Promise<void>;
}

export interface ProducerOptions {
  logger: Logger;
  /** Listen on this port instead of the configured one (0 = any free port). */
  port?: number;
  /** Run the batch control worker (plan, finalise, cron launches); default true. Tests of the API alone turn it off. */
  batchControl?: boolean;
}

export async function startProducer(config: Config, opts: ProducerOptions): Promise<RunningProducer> {
  const replicaId = randomUUID().slice(0, 12);
  const logger = opts.logger.child({ role: 'producer', replicaId });
  const prefix = config.redis.prefix;
  // Before any connection: a producer that would listen unprotected refuses to start at all.
  const keys = loadKeyTable(config.producer.auth);
  const auth = decideAuth(config.producer.auth.mode, config.producer.host, keys.size);
  if (auth.enabled) logger.info({ keys: auth.keys }, 'auth on: API keys are checked');
  else logger.warn(auth.notice);
  // One set of storage clients for the training checks and batch control (the cloud SDKs hold connections and tokens).
  const storage = createStorage(config.storage);
  const redis = createRedis(config.redis, 'command', {
    connectionName: `producer:${replicaId}`,
    commandTimeoutMs: config.producer.redisCommandTimeoutMs,
  });
  redis.on('error', (err) => logger.debug({ err }, 'redis connection error'));
  const blocking = createRedis(config.redis, 'blocking', { connectionName: `producer-inbox:${replicaId}` });
  blocking.on('error', (err) => logger.debug({ err }, 'redis inbox connection error'));

  // BullMQ reads the server version when a Queue is built; without an offline
  // queue that must happen on a live connection, so wait for Redis first.
  await waitForRedisLogged(redis, logger);
  try {
    await checkEviction(redis, config.redis.evictionCheck, logger);
  } catch (err) {
    redis.disconnect();
    blocking.disconnect();
    throw err;
  }
  const rtQueues = new Map(
    config.pools.map((p) => [p.name, new Queue(queueName('rt', p.name), { connection: redis, prefix })]),
  );
  for (const q of rtQueues.values()) q.on('error', (err) => logger.debug({ err }, 'queue error'));
  const depth = new DepthMonitor(rtQueues, config.producer.depthRefreshMs, logger);
  const metrics = createProducerMetrics(() =>
    [...rtQueues.keys()].flatMap((pool) => {
      const c = depth.counts(pool);
      const queue = queueDisplayName('rt', pool);
      return [
        { queue, state: 'waiting', jobs: c.waiting },
        { queue, state: 'active', jobs: c.active },
      ];
    }),
  );
  // Beside /metrics when metrics.otlp.endpoint is set: the same registry over OTLP.
  const otlp = startOtlpMetrics(config.metrics.otlp, { role: 'producer', registries: [metrics.registry], logger });
  const inbox = new ReplyInbox(blocking, inboxKey(prefix, replicaId), logger);
  const service = new RealtimeService({ config, queues: rtQueues, redis, inbox, depth, metrics, logger });
  const controlQueue = new Queue(batchControlQueue, { connection: redis, prefix });
  controlQueue.on('error', (err) => logger.debug({ err }, 'queue error'));
  const batches = new BatchService({
    config,
    redis,
    store: new BatchStore(redis, prefix),
    controlQueue,
    logger: logger.child({ component: 'batch-api' }),
  });

  // Typed as fastify's base logger so that `app` is a plain FastifyInstance.
  const fastifyLogger: FastifyBaseLogger = logger;
  const app = Fastify({
    loggerInstance: fastifyLogger,
    bodyLimit: config.producer.bodyLimitBytes,
    // close() runs after the drain has answered every accepted request: drop what is left.
    forceCloseConnections: true,
    genReqId: () => randomUUID(),
  });
  app.setErrorHandler(errorHandler);
  // First on every request (routes, Board, 404s): the principal, or 401/403.
  app.addHook('onRequest', authenticate(auth.enabled ? keys : undefined));
  useJsonBodyParser(app);
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new FleetError('not_found', `no route ${request.method} ${request.url}`)),
  );
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.inc({
      route: request.routeOptions.url ?? 'unmatched',
      method: request.method,
      status: reply.statusCode,
    });
  });

  await app.register(async (api) => {
    api.setValidatorCompiler(validatorCompiler);
    api.setSerializerCompiler(serializerCompiler);
    if (rateLimitEnabled(config.producer.rateLimit, auth.enabled)) {
      await registerRateLimit(api, config.producer.rateLimit, redis, prefix);
    }
    await api.register(chatCompletionsRoute(service));
    await api.register(inferRoute(service, new TrainedModelRegistry(redis, config.redis.prefix)));
    await api.register(batchRoutes(batches));
    await api.register(trainingRoutes(config, redis, storage));
    await api.register(trainedModelsRoutes(config, redis));
    await api.register(trainingLogsRoutes(config, redis));
  });
  await app.register(fleetRoutes(config, redis));
  await app.register(schedulerExplainRoute(config, redis));
  app.get('/metrics', async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  // Every queue of every pool on the board (a chunk or rank that failed for good is shown there with
  // its reason), and the batch control queue (plan and finalize jobs). The bulk and train queues are
  // the board's own: the producer adds nothing to them.
  const boardQueues = config.pools.flatMap((p) =>
    (['bulk', 'train'] as const).map((kind) => ({
      queue: new Queue(queueName(kind, p.name), { connection: redis, prefix }),
      displayName: queueDisplayName(kind, p.name),
    })),
  );
  for (const { queue } of boardQueues) queue.on('error', (err) => logger.debug({ err }, 'queue error'));
  await registerBoard(
    app,
    [
      ...config.pools.map((p) => ({ queue: rtQueues.get(p.name)!, displayName: queueDisplayName('rt', p.name) })),
      ...boardQueues,
      { queue: controlQueue, displayName: batchControlQueue.replace(/[{}]/g, '') },
    ],
    config.producer.boardReadOnly,
  );

  inbox.start();
  depth.start();
  const address = await app.listen({ host: config.producer.host, port: opts.port ?? config.producer.port });
  logger.info({ url: address, board: `${address}${BOARD_PATH}`, metrics: `${address}/metrics` }, 'producer ready');

  // Its own connection: a BullMQ Worker blocks, and must retry through an outage rather than fail fast.
  const controlConnection =
    opts.batchControl === false
      ? undefined
      : createRedis(config.redis, 'worker', { connectionName: `producer-batch:${replicaId}` });
  controlConnection?.on('error', (err) => logger.debug({ err }, 'redis batch-control connection error'));
  const control =
    controlConnection &&
    startBatchControl({
      config,
      connection: controlConnection,
      store: new BatchStore(controlConnection, prefix),
      storage,
      logger,
      launchScheduled: (schedule, firedAt) => batches.launchScheduled(schedule, firedAt),
    });

  let closing: Promise<void> | undefined;
  return {
    app,
    url: address,
    replicaId,
    auth,
    close(graceMs = config.producer.shutdownGraceMs) {
      closing ??= (async () => {
        logger.info({ graceMs, inFlight: service.inFlight }, 'producer draining');
        // Control jobs drain beside the requests, within the same grace period; they are
        // resumable, so what it cuts short is put back and runs again on another replica.
        await Promise.all([service.drain(graceMs), control?.close(graceMs)]);
        await app.close();
        depth.stop();
        await otlp?.close();
        await inbox.close();
        // Bounded: during a Redis outage BullMQ's close can wait for a reconnect that never comes.
        await settleWithin(
          Promise.all([...rtQueues.values(), ...boardQueues.map((b) => b.queue), controlQueue].map((q) => q.close())),
          2000,
        );
        if (controlConnection) await closeRedis(controlConnection);
        await closeRedis(redis);
        logger.info('producer closed');
      })();
      return closing;
    },
  };
}

async function waitForRedisLogged(redis: RedisClient, logger: Logger): Promise<void> {
  for (;;) {
    try {
      await waitForRedis(redis, 5000);
      return;
    } catch {
      logger.warn('waiting for Redis to answer before starting the API');
    }
  }
}
