/**
 * The raw BullMQ baseline, worker side: one BullMQ Worker with a no-op
 * processor, in its own process (as the interfleet gpu-worker is). Same
 * retention options as interfleet's real-time lane. Env: BENCH_REDIS_URL,
 * BENCH_PREFIX, BENCH_QUEUE, BENCH_CONCURRENCY.
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

const connection = new Redis(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
const worker = new Worker(process.env.BENCH_QUEUE ?? '{bench.baseline}', async () => ({ label: 'neutral', score: 0 }), {
  connection,
  prefix: process.env.BENCH_PREFIX ?? 'bench',
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? '64'),
  removeOnComplete: { count: 200 },
  removeOnFail: { count: 5000 },
});
worker.on('error', (err) => console.error('baseline worker error', err));
await worker.waitUntilReady();

let closing = false;
const shutdown = (): void => {
  if (closing) return;
  closing = true;
  void worker.close().finally(() => {
    connection.disconnect();
    process.exit(0);
  });
};
process.on('SIGTERM', shutdown);
process.on('disconnect', shutdown);
process.send?.({ type: 'ready' });
