/**
 * `npm start`: the whole fleet on one machine with embedded defaults: a
 * producer API, a scheduler, and local gpu-worker processes (in place of
 * Kubernetes pods), against REDIS_URL or a private redis-server.
 * This file may import every role; nothing imports it.
 */
import { ConfigError, loadConfig, type Config } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { runUntilSignal } from '../common/process.ts';
import { startProducer } from '../producer/server.ts';
import { startScheduler } from '../scheduler/scheduler.ts';
import { withFileRoots } from './file-roots.ts';
import { LocalProcessFleet } from './local-fleet.ts';
import { defaultDataDir, ensureRedis, NoRedisError } from './local-redis.ts';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  // Roles bind their own `role`; the launcher's messages get theirs from `log`.
  const logger = createLogger(config.log);
  const log = logger.child({ role: 'launcher' });
  let redis;
  try {
    redis = await ensureRedis(config.redis.url, {
      dataDir: config.launcher.redis.dataDir ?? defaultDataDir(),
      appendfsync: config.launcher.redis.appendfsync,
    });
  } catch (err) {
    if (err instanceof NoRedisError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
  if (redis.stop) {
    log.info({ url: redis.url, dataDir: redis.dataDir }, 'no Redis answered; started a private redis-server');
  }
  config = { ...config, redis: { ...config.redis, url: redis.url } };
  // file:// only under the configured roots, or else one data directory of ours (workers get the same).
  const files = withFileRoots(config);
  config = files.config;

  // Every pool gets its workers (a pool without any never becomes ready); the scheduler's `local`
  // actuator resizes the pools with an autoscale policy from there.
  const fleet = new LocalProcessFleet(config, logger.child({ role: 'launcher' }));
  for (const pool of config.pools) {
    for (let i = 0; i < LocalProcessFleet.initialSize(pool, config); i++) fleet.start(pool.name);
  }
  let scheduler;
  let ready;
  try {
    scheduler = await startScheduler(config, { logger, localFleet: fleet });
    ready = await fleet.ready();
  } catch (err) {
    await scheduler?.close();
    await fleet.close();
    throw err;
  }
  const producer = await startProducer(config, { logger });

  const lines = [
    '',
    'interfleet is running on embedded defaults',
    `  API        ${producer.url}/v1  (OpenAI-compatible: /v1/chat/completions, /v1/models; native: /v1/infer)`,
    `  dashboard  ${producer.url}/admin/queues`,
    `  metrics    ${producer.url}/metrics (producer)`,
    ...ready.map((w) => `             ${w.metricsUrl ?? '(disabled)'} (gpu-worker ${w.workerId}, pool ${w.pool})`),
    `             ${scheduler.metricsUrl ?? '(disabled)'} (scheduler)`,
    ...poolSizeLines(config),
    `  explain    npm run cli -- scheduler explain --url ${producer.url}`,
    `             npm run cli -- autoscale explain --url ${producer.url}`,
    producer.auth.enabled
      ? `  auth       on: ${producer.auth.keys} API key(s); send one as 'Authorization: Bearer <key>'`
      : `  auth       ${producer.auth.notice}`,
    `  files      file:// batches may read and write under ${config.storage.file.roots.join(', ')}${files.dataDir ? ' (INTERFLEET_DATA_DIR to move it, storage.file.roots to choose your own)' : ' (storage.file.roots)'}`,
    `  redis      ${redis.url}${redis.stop ? ` (private; append-only file, fsync ${config.launcher.redis.appendfsync}, kept in ${redis.dataDir})` : ''}`,
    `  try        curl -s ${producer.url}/v1/chat/completions -H 'content-type: application/json' \\`,
    `               -d '{"model":"${config.pools[0]!.name}","messages":[{"role":"user","content":"Once upon a time"}]}'`,
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');

  runUntilSignal(log, async () => {
    await producer.close(config.producer.shutdownGraceMs);
    // The scheduler first, so that its actuator starts no worker while they drain.
    await scheduler.close();
    await fleet.close();
    await redis.stop?.();
  });
}

/** One line per pool: its fixed size, or the range the autoscaler moves it in. */
function poolSizeLines(config: Config): string[] {
  return config.pools.map((pool, i) => {
    const head = i === 0 ? '  pools     ' : '            ';
    const a = pool.autoscale;
    const size = a
      ? `autoscaled ${a.minReplicas}–${a.maxReplicas} workers (local actuator, every ${config.autoscaler.everyMs} ms)`
      : `${config.launcher.workers} workers (fixed: no autoscale policy)`;
    return `${head} ${pool.name}: ${size}`;
  });
}

await main();
