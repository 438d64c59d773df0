/**
 * The plain-BullMQ side of bench:colocate: one worker process = one modelled
 * GPU (a sim backend, hence one SimEngine, shared by every job of the
 * process), fed by BullMQ Workers in one of two layouts:
 * - `one`: one queue holding real-time and bulk jobs, `slots` jobs at once
 *   (setups a, FIFO, and b, BullMQ priorities: the caller sets priorities);
 * - `split`: a real-time queue with `rtSlots` and a bulk queue with `bulkSlots`
 *   (setup c, and the two baselines run alone).
 * A real-time job runs one chat and returns its timings as the fleet's
 * real-time lane measures them (worker start, first token, done: wall ms). A
 * bulk job runs its chunk the way the fleet's chunk runner does: micro-batches
 * of `batchSize` records in the engine together, one after another (a call
 * per record, so that it can report progress as each ends).
 * Env: BENCH_HARNESS (JSON, harnessSpecSchema).
 */
import { setMaxListeners } from 'node:events';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { createSimBackend } from '../../gpu-worker/backends/sim.ts';
import { BULK_PRIORITY } from '../../gpu-worker/backends/backend.ts';
import {
  BULK_JOB,
  bulkJobSchema,
  chatInput,
  RT_JOB,
  rtJobSchema,
  simSpecSchema,
  type RtTimings,
} from './colocate-workload.ts';

export const harnessSpecSchema = z.object({
  redisUrl: z.string(),
  prefix: z.string(),
  layout: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('one'), queue: z.string(), slots: z.number().int().min(1) }),
    z.object({
      kind: z.literal('split'),
      rtQueue: z.string(),
      rtSlots: z.number().int().min(1),
      bulkQueue: z.string(),
      bulkSlots: z.number().int().min(1),
    }),
  ]),
  sim: simSpecSchema,
  batchSize: z.number().int().min(1),
});
export type HarnessSpec = z.infer<typeof harnessSpecSchema>;

const spec = harnessSpecSchema.parse(JSON.parse(process.env.BENCH_HARNESS ?? 'null'));
const backend = createSimBackend({ ...spec.sim, defaultMaxTokens: 1 });

async function runRealtime(data: unknown, signal: AbortSignal): Promise<RtTimings> {
  const startedAt = Date.now();
  const job = rtJobSchema.parse(data);
  let firstTokenAt: number | undefined;
  await backend.run(chatInput(job.promptTokens, job.outputTokens), {
    signal,
    onDelta: () => (firstTokenAt ??= Date.now()),
  });
  const doneAt = Date.now();
  return {
    queueMs: startedAt - job.enqueuedAt,
    firstTokenMs: (firstTokenAt ?? doneAt) - startedAt,
    runMs: doneAt - startedAt,
  };
}

async function runBulk(job: Job, signal: AbortSignal): Promise<{ completed: number }> {
  const chunk = bulkJobSchema.parse(job.data);
  const input = chatInput(chunk.promptTokens, chunk.outputTokens);
  // One run() per record, each listening on the job's signal: a micro-batch's worth at once, not a leak.
  setMaxListeners(spec.batchSize + 1, signal);
  let completed = 0;
  let reported = 0;
  // Progress per record, throttled to one report in flight: with the whole backlog in the engine
  // at once a chunk runs for minutes, and the meter needs to know when its records ended.
  let reporting: Promise<void> | undefined;
  const report = (): void => {
    if (reporting !== undefined || completed === reported) return;
    const n = completed;
    reporting = job
      .updateProgress({ completed: n })
      .then(() => {
        reported = n;
      })
      .catch(() => undefined)
      .finally(() => {
        reporting = undefined;
        report();
      });
  };
  while (completed < chunk.records) {
    const n = Math.min(spec.batchSize, chunk.records - completed);
    // One call per record, in the engine together like runMany's batch, so each ends on its own.
    const results = await Promise.allSettled(
      Array.from({ length: n }, () =>
        backend.run(input, { signal, priority: BULK_PRIORITY }).then(() => {
          completed++;
          report();
        }),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
  await reporting;
  return { completed };
}

// A signal per job: the engine adds an abort listener per call, so a shared one would pile them up.
const processor = async (job: Job): Promise<unknown> => {
  if (job.name === RT_JOB) return runRealtime(job.data, new AbortController().signal);
  if (job.name === BULK_JOB) return runBulk(job, new AbortController().signal);
  throw new Error(`unknown job ${job.name}`);
};

const connection = new Redis(spec.redisUrl, { maxRetriesPerRequest: null });
// The bench stops its private Redis right after its workers: reconnect errors then are expected.
connection.on('error', () => undefined);
const opts = { connection, prefix: spec.prefix, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } };
const workers =
  spec.layout.kind === 'one'
    ? [new Worker(spec.layout.queue, processor, { ...opts, concurrency: spec.layout.slots })]
    : [
        new Worker(spec.layout.rtQueue, processor, { ...opts, concurrency: spec.layout.rtSlots }),
        new Worker(spec.layout.bulkQueue, processor, { ...opts, concurrency: spec.layout.bulkSlots }),
      ];
for (const w of workers) w.on('error', (err) => console.error('harness worker error', err));
await Promise.all(workers.map((w) => w.waitUntilReady()));

let closing = false;
const shutdown = (): void => {
  if (closing) return;
  closing = true;
  // Jobs still running are abandoned: the run is over and its queues are deleted.
  void Promise.all(workers.map((w) => w.close(true))).finally(() => {
    void backend.close();
    connection.disconnect();
    process.exit(0);
  });
};
process.on('SIGTERM', shutdown);
process.on('disconnect', shutdown);
process.send?.({ type: 'ready' });
