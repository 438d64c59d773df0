/**
 * Setups (a)–(c) and the two baselines, bench side: a plain-BullMQ harness of
 * `workers` child processes (colocate-harness.child.ts), each one modelled
 * GPU, on a private Redis.
 * - fifo: one queue, rtSlots + bulkSlots jobs per worker, first come first served;
 * - priority: the same queue, real-time jobs at BullMQ priority 1, bulk at 2;
 * - split: a real-time queue with rtSlots per worker and a bulk queue with bulkSlots;
 * - gpu-split: whole GPUs split: the first `rtWorkers` workers take only the
 *   real-time queue (rtSlots), the others only the bulk queue (bulkSlots), as
 *   dedicated real-time and batch pools would;
 * - rt-alone / bulk-alone: the split layout with only one kind of load.
 * Every layout gives real-time and bulk the same slots in total; the one-queue
 * layouts pool them, which is what one queue means.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { Child } from './children.ts';
import { BulkMeter } from './colocate-bulk-meter.ts';
import type { HarnessSpec } from './colocate-harness.child.ts';
import type { ColocateParams, RunningSetup } from './colocate-setup.ts';
import { BULK_JOB, RT_JOB, rtTimingsSchema, type BulkJob, type RtJob } from './colocate-workload.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export type HarnessKind = 'fifo' | 'priority' | 'split' | 'gpu-split' | 'rt-alone' | 'bulk-alone';

const PREFIX = 'colo';
const ONE_QUEUE = '{colo.one}';
const RT_QUEUE = '{colo.rt}';
const BULK_QUEUE = '{colo.bulk}';
const RT_PRIORITY = 1;
const BULK_PRIORITY = 2;

export async function startHarness(kind: HarnessKind, p: ColocateParams, redisUrl: string): Promise<RunningSetup> {
  const one = kind === 'fifo' || kind === 'priority';
  const layout: HarnessSpec['layout'] = one
    ? { kind: 'one', queue: ONE_QUEUE, slots: p.rtSlots + p.bulkSlots }
    : { kind: 'split', rtQueue: RT_QUEUE, rtSlots: p.rtSlots, bulkQueue: BULK_QUEUE, bulkSlots: p.bulkSlots };
  const rtQueueName = one ? ONE_QUEUE : RT_QUEUE;
  const bulkQueueName = one ? ONE_QUEUE : BULK_QUEUE;
  const spec: HarnessSpec = {
    redisUrl,
    prefix: PREFIX,
    layout,
    sim: p.sim,
    batchSize: p.batchSize,
  };

  // gpu-split: each worker serves one queue only, so the split is of whole GPUs.
  const specOf = (i: number): HarnessSpec =>
    kind !== 'gpu-split'
      ? spec
      : {
          ...spec,
          layout:
            i < p.rtWorkers
              ? { kind: 'one', queue: RT_QUEUE, slots: p.rtSlots }
              : { kind: 'one', queue: BULK_QUEUE, slots: p.bulkSlots },
        };
  const children = Array.from({ length: p.workers }, (_, i) =>
    Child.start(`harness-${i}`, path.join(here, 'colocate-harness.child.ts'), {
      BENCH_HARNESS: JSON.stringify(specOf(i)),
    }),
  );
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const eventsConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  for (const c of [connection, eventsConnection]) c.on('error', () => undefined);
  const rtQueue = new Queue(rtQueueName, { connection, prefix: PREFIX });
  const bulkQueue = one ? rtQueue : new Queue(bulkQueueName, { connection, prefix: PREFIX });
  const rtEvents = new QueueEvents(rtQueueName, { connection: eventsConnection, prefix: PREFIX });
  const waiting = new Map<string, { resolve: (ms: number) => void; reject: (e: Error) => void }>();
  rtEvents.on('completed', ({ jobId, returnvalue }) => {
    const w = waiting.get(jobId);
    if (w === undefined) return;
    waiting.delete(jobId);
    const t = rtTimingsSchema.safeParse(returnvalue);
    if (t.success) w.resolve(t.data.queueMs + t.data.firstTokenMs);
    else w.reject(new Error(`job ${jobId}: unexpected result ${JSON.stringify(returnvalue)}`));
  });
  rtEvents.on('failed', ({ jobId, failedReason }) => {
    waiting.get(jobId)?.reject(new Error(`job ${jobId} failed: ${failedReason}`));
    waiting.delete(jobId);
  });
  const meter = await BulkMeter.start(
    redisUrl,
    bulkQueueName,
    PREFIX,
    (jobId, rv) => (jobId.startsWith('b-') ? (rv as { completed: number }).completed : undefined),
    p.bulkOutputTokens,
  );
  await Promise.all([rtEvents.waitUntilReady(), rtQueue.waitUntilReady(), bulkQueue.waitUntilReady()]);
  await Promise.all(children.map((c) => c.ready));

  const priority = (n: number) => (kind === 'priority' ? { priority: n } : {});
  return {
    meter,
    async send(req, i) {
      const jobId = `r-${i}`;
      const result = new Promise<number>((resolve, reject) => waiting.set(jobId, { resolve, reject }));
      const data: RtJob = { promptTokens: req.promptTokens, outputTokens: req.outputTokens, enqueuedAt: Date.now() };
      await rtQueue.add(RT_JOB, data, { jobId, ...priority(RT_PRIORITY), removeOnComplete: true });
      return result;
    },
    async startBulk() {
      const data: BulkJob = {
        records: p.chunkRecords,
        promptTokens: p.bulkPromptTokens,
        outputTokens: p.bulkOutputTokens,
      };
      for (let from = 0; from < p.backlogChunks; from += 500) {
        const n = Math.min(500, p.backlogChunks - from);
        await bulkQueue.addBulk(
          Array.from({ length: n }, (_, j) => ({
            name: BULK_JOB,
            data,
            opts: { jobId: `b-${from + j}`, ...priority(BULK_PRIORITY), removeOnComplete: true },
          })),
        );
      }
    },
    notes: () => [],
    async close() {
      await Promise.all(children.map((c) => c.stop(3000)));
      await meter.close();
      await rtEvents.close();
      await rtQueue.close();
      if (bulkQueue !== rtQueue) await bulkQueue.close();
      connection.disconnect();
      eventsConnection.disconnect();
    },
  };
}
