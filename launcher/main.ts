/**
 * `npm start`: the whole fleet on one machine with embedded defaults: a
 * producer API, a scheduler, and local gpu-worker processes (in place of
 * Kubernetes pods), against REDIS_URL or a private redis-server.
 * This file may import every role; nothing imports it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { runUntilSignal } from '../common/process.ts';
import { startProducer } from '../producer/server.ts';
import { startScheduler } from '../scheduler/scheduler.ts';
import { ensureRedis, NoRedisError } from './local-redis.ts';

interface WorkerReady {
  type: 'ready';
  workerId: string;
  pool: string;
  metricsUrl?: string;
}

// Run from its bundle (dist/launcher/main.js, `npm start`), the workers run from theirs with plain
// node (none of the launcher's V8 flags); run from source, through tsx.
const bundled = import.meta.url.endsWith('.js');
const workerEntry = fileURLToPath(new URL(`../gpu-worker/main.${bundled ? 'js' : 'ts'}`, import.meta.url));
const workerExecArgv = bundled ? [] : ['--import', 'tsx'];

function startLocalWorker(index: number, config: Config): { child: ChildProcess; ready: Promise<WorkerReady> } {
  const child = fork(workerEntry, [], {
    execArgv: workerExecArgv,
    // Own process group: Ctrl-C reaches only the launcher, which drains the workers in order.
    detached: true,
    env: {
      ...process.env,
      REDIS_URL: config.redis.url,
      WORKER_METRICS_PORT: '0',
      INTERFLEET_WORKER_INDEX: String(index),
    },
  });
  const ready = new Promise<WorkerReady>((resolve, reject) => {
    child.once('message', (msg) => resolve(msg as WorkerReady));
    child.once('exit', (code) =>
      reject(new Error(`local gpu-worker ${index} exited with code ${code} before it was ready`)),
    );
  });
  return { child, ready };
}

async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

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
    redis = await ensureRedis(config.redis.url);
  } catch (err) {
    if (err instanceof NoRedisError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
  if (redis.stop) log.info({ url: redis.url }, 'no Redis answered; started a private redis-server');
  config = { ...config, redis: { ...config.redis, url: redis.url } };

  const scheduler = await startScheduler(config, { logger });
  const workers = Array.from({ length: config.launcher.workers }, (_, i) => startLocalWorker(i, config));
  const ready = await Promise.all(workers.map((w) => w.ready));
  const producer = await startProducer(config, { logger });

  const lines = [
    '',
    'interfleet is running on embedded defaults',
    `  API        ${producer.url}/v1  (OpenAI-compatible: /v1/chat/completions, /v1/models; native: /v1/infer)`,
    `  dashboard  ${producer.url}/admin/queues`,
    `  metrics    ${producer.url}/metrics (producer)`,
    ...ready.map((w) => `             ${w.metricsUrl ?? '(disabled)'} (gpu-worker ${w.workerId}, pool ${w.pool})`),
    `             ${scheduler.metricsUrl ?? '(disabled)'} (scheduler)`,
    `  explain    npm run cli -- scheduler explain --url ${producer.url}`,
    `  redis      ${redis.url}${redis.stop ? ' (private, removed on exit)' : ''}`,
    `  try        curl -s ${producer.url}/v1/chat/completions -H 'content-type: application/json' \\`,
    `               -d '{"model":"${config.pools[0]!.name}","messages":[{"role":"user","content":"Once upon a time"}]}'`,
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');

  runUntilSignal(log, async () => {
    await producer.close(config.producer.shutdownGraceMs);
    await Promise.all(workers.map((w) => stopChild(w.child, config.worker.shutdownGraceMs + 5000)));
    await scheduler.close();
    await redis.stop?.();
  });
}

await main();
