/**
 * The worker's Prometheus metrics. Latency histograms use buckets that
 * resolve milliseconds: real-time answers are measured in them. Bulk chunks
 * take seconds to minutes and have buckets of their own.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { latencyBuckets } from '../common/metrics.ts';

/** Seconds a bulk chunk runs: a micro-batch or two up to a thousand slow records. */
export const chunkBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export function createWorkerMetrics(defaultLabels: Record<string, string>) {
  const registry = new Registry();
  registry.setDefaultLabels(defaultLabels);
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    jobs: new Counter({
      name: 'interfleet_worker_jobs_total',
      help: 'Jobs finished by this worker, by lane and outcome.',
      labelNames: ['pool', 'lane', 'outcome'] as const,
      registers: [registry],
    }),
    runSeconds: new Histogram({
      name: 'interfleet_worker_run_seconds',
      help: 'Time from job start to done on the worker, by lane and outcome.',
      labelNames: ['pool', 'lane', 'outcome'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    queueWaitSeconds: new Histogram({
      name: 'interfleet_worker_queue_wait_seconds',
      help: 'Time a job waited in its queue before this worker started it.',
      labelNames: ['pool', 'lane'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    firstTokenSeconds: new Histogram({
      name: 'interfleet_worker_first_token_seconds',
      help: 'Time from job start to the first generated token (chat) or result.',
      labelNames: ['pool', 'lane'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'interfleet_worker_in_flight',
      help: 'Jobs running now on this worker.',
      labelNames: ['pool', 'lane'] as const,
      registers: [registry],
    }),
    trainingReduceSeconds: new Histogram({
      name: 'interfleet_worker_training_reduce_seconds',
      help: "Time a round's reduce took on this worker: pulling the ranks' outputs, averaging, uploading the model.",
      labelNames: ['pool'] as const,
      buckets: chunkBuckets,
      registers: [registry],
    }),
    bulkChunks: new Counter({
      name: 'interfleet_bulk_chunks_total',
      help:
        'Bulk chunk runs, by outcome: done, already_done, skipped, yielded (draining), preempted, ' +
        'conflict (another run of the chunk got ahead: back to the queue), superseded (settled by another run), ' +
        'failed (for good), retried.',
      labelNames: ['pool', 'outcome'] as const,
      registers: [registry],
    }),
    bulkLines: new Counter({
      name: 'interfleet_bulk_lines_total',
      help: 'Input lines of settled bulk chunks, by result: completed (output part) or failed (error part).',
      labelNames: ['pool', 'result'] as const,
      registers: [registry],
    }),
    bulkChunkSeconds: new Histogram({
      name: 'interfleet_bulk_chunk_seconds',
      help: 'Time one bulk chunk run took on this worker, by outcome.',
      labelNames: ['pool', 'outcome'] as const,
      buckets: chunkBuckets,
      registers: [registry],
    }),
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;
