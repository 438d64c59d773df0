/**
 * The raw BullMQ baseline, caller side: `queue.add` then
 * `job.waitUntilFinished(queueEvents)` — the textbook way to wait for a
 * BullMQ job's result. The worker side runs in `bullmq-worker.child.ts`.
 */
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { Call } from './load.ts';

export const BASELINE_QUEUE = '{bench.baseline}';

export interface BullmqCaller {
  call: Call;
  close(): Promise<void>;
}

export async function startBullmqCaller(redisUrl: string, prefix: string, timeoutMs = 10_000): Promise<BullmqCaller> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const eventsConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(BASELINE_QUEUE, { connection, prefix });
  const events = new QueueEvents(BASELINE_QUEUE, { connection: eventsConnection, prefix });
  // waitUntilFinished adds one 'closing' listener on the Queue per waiting call.
  queue.setMaxListeners(0);
  events.setMaxListeners(0);
  await queue.waitUntilReady();
  await events.waitUntilReady();
  const data = { task: 'sentiment', text: 'hi' };
  return {
    async call() {
      const job = await queue.add('bench', data);
      await job.waitUntilFinished(events, timeoutMs);
    },
    async close() {
      await events.close();
      await queue.close();
      connection.disconnect();
      eventsConnection.disconnect();
    },
  };
}
