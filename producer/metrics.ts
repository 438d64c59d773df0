/** The producer's Prometheus metrics; queue depths are read at scrape time from the depth monitor. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { latencyBuckets } from '../common/metrics.ts';

export interface DepthReading {
  queue: string;
  state: string;
  jobs: number;
}

/** @param readDepths queue depths as last sampled, read at scrape time */
export function createProducerMetrics(readDepths: () => DepthReading[] = () => []) {
  const registry = new Registry();
  registry.setDefaultLabels({ role: 'producer' });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'interfleet_http_requests_total',
      help: 'HTTP requests answered, by route and status code.',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'interfleet_realtime_latency_seconds',
      help: 'Real-time request latency from enqueue to end, by pool, task and outcome.',
      labelNames: ['pool', 'task', 'outcome'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    firstByte: new Histogram({
      name: 'interfleet_realtime_first_token_seconds',
      help: 'Streamed requests: enqueue to the first token reaching the producer.',
      labelNames: ['pool'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'interfleet_realtime_in_flight',
      help: 'Real-time requests this replica is waiting on.',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'interfleet_realtime_rejected_total',
      help: 'Real-time requests refused at admission, by reason.',
      labelNames: ['pool', 'reason'] as const,
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'interfleet_queue_jobs',
      help: 'Jobs in a queue by state, as last sampled.',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
      collect() {
        for (const d of readDepths()) this.set({ queue: d.queue, state: d.state }, d.jobs);
      },
    }),
  };
}

export type ProducerMetrics = ReturnType<typeof createProducerMetrics>;
