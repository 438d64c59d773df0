/**
 * The worker's Prometheus metrics. Latency histograms use buckets that
 * resolve milliseconds: real-time answers are measured in them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { latencyBuckets } from '../common/metrics.ts';

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
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;
