/**
 * The OTLP export of the prom-client registries (common/otlp-metrics.ts) against a local OTLP/HTTP
 * receiver that decodes the protobuf it gets (test/helpers/otlp-receiver.ts): exact values and types
 * from a registry of known content; every role (producer, scheduler, gpu-worker, on a real Redis)
 * exporting its named metrics with its resource; a receiver that answers 503 (retried by the SDK)
 * or is not there (logged; the role serves on and closes).
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../common/config.ts';
import { silentLogger } from '../../common/logger.ts';
import { startOtlpMetrics } from '../../common/otlp-metrics.ts';
import { startProducer } from '../../producer/server.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, testConfig, type TestFleet } from '../helpers/fleet.ts';
import { attrs, pointValue, startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { until } from '../helpers/until.ts';

let receiver: OtlpReceiver;
beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterAll(() => receiver?.close());

const otlpConfig = (endpoint: string, over: Record<string, unknown> = {}) =>
  parseConfig({}, JSON.stringify({ metrics: { otlp: { endpoint, intervalMs: 60_000, timeoutMs: 5000, ...over } } }))
    .metrics.otlp;

function knownRegistry() {
  const registry = new Registry();
  registry.setDefaultLabels({ role: 'test' });
  const counter = new Counter({ name: 'interfleet_t_total', help: 'c', labelNames: ['pool'], registers: [registry] });
  const gauge = new Gauge({ name: 'interfleet_t_in_flight', help: 'g', labelNames: ['pool'], registers: [registry] });
  const histogram = new Histogram({
    name: 'interfleet_t_seconds',
    help: 'h',
    labelNames: ['pool'],
    buckets: [0.01, 0.1, 1],
    registers: [registry],
  });
  counter.inc({ pool: 'a' }, 3);
  counter.inc({ pool: 'b' });
  gauge.set({ pool: 'a' }, 7.5);
  for (const v of [0.005, 0.05, 0.05, 0.5, 30]) histogram.observe({ pool: 'a' }, v);
  return registry;
}

describe('OTLP export of a prom-client registry', () => {
  it('sends counters as cumulative monotonic sums, gauges as gauges, histograms with their buckets', async () => {
    const exp = startOtlpMetrics(
      otlpConfig(receiver.url, { resourceAttributes: { 'deployment.environment': 'test' } }),
      { role: 'unit', registries: [knownRegistry()], logger: silentLogger(), env: { POD_NAME: 'pod-1' } },
    )!;
    try {
      await exp.flush();
    } finally {
      await exp.close();
    }
    expect(receiver.requests.at(-1)).toEqual({ status: 200, contentType: 'application/x-protobuf' });
    const counter = receiver.latest('unit', 'interfleet_t_total')!;
    expect(counter.resource).toMatchObject({
      'service.name': 'unit',
      'service.namespace': 'interfleet',
      'service.instance.id': 'pod-1',
      'deployment.environment': 'test',
    });
    expect(counter.data).toBe('sum');
    expect(counter.sum!.isMonotonic).toBe(true);
    expect(counter.sum!.aggregationTemporality).toBe('AGGREGATION_TEMPORALITY_CUMULATIVE');
    const byPool = Object.fromEntries(counter.sum!.dataPoints.map((p) => [attrs(p.attributes).pool, pointValue(p)]));
    expect(byPool).toEqual({ a: 3, b: 1 });
    expect(attrs(counter.sum!.dataPoints[0]!.attributes).role).toBe('test'); // the registry's default label
    const p0 = counter.sum!.dataPoints[0]!;
    expect(p0.timeUnixNano).toBeGreaterThanOrEqual(p0.startTimeUnixNano);

    const gauge = receiver.latest('unit', 'interfleet_t_in_flight')!;
    expect(gauge.data).toBe('gauge');
    expect(pointValue(gauge.gauge!.dataPoints[0]!)).toBe(7.5);

    const hist = receiver.latest('unit', 'interfleet_t_seconds')!;
    expect(hist.data).toBe('histogram');
    expect(hist.histogram!.aggregationTemporality).toBe('AGGREGATION_TEMPORALITY_CUMULATIVE');
    const h = hist.histogram!.dataPoints[0]!;
    expect(h.explicitBounds).toEqual([0.01, 0.1, 1]);
    // Per bucket, not cumulative: ≤0.01, ≤0.1, ≤1, above.
    expect(h.bucketCounts).toEqual([1, 2, 1, 1]);
    expect(h.count).toBe(5);
    expect(h.sum).toBeCloseTo(30.605, 9);
  });

  it('is off without an endpoint', () => {
    const cfg = parseConfig({}, '').metrics.otlp;
    expect(cfg.endpoint).toBeUndefined();
    expect(startOtlpMetrics(cfg, { role: 'x', registries: [], logger: silentLogger() })).toBeUndefined();
    expect(parseConfig({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: receiver.url }, '').metrics.otlp.endpoint).toBe(
      receiver.url,
    );
    expect(() => parseConfig({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'collector:4318' }, '')).toThrow(
      /metrics\.otlp\.endpoint: endpoint must be an http/,
    );
  });

  it('retries an export the receiver answered 503', async () => {
    const exp = startOtlpMetrics(otlpConfig(receiver.url), {
      role: 'retry',
      registries: [knownRegistry()],
      logger: silentLogger(),
    })!;
    const before = receiver.requests.length;
    receiver.failNext(1);
    try {
      await exp.flush();
    } finally {
      await exp.close();
    }
    // The flush: refused, then retried; close() exports once more.
    expect(receiver.requests.slice(before, before + 2).map((r) => r.status)).toEqual([503, 200]);
    expect(receiver.latest('retry', 'interfleet_t_total')).toBeDefined();
  });
});

describe('every role exports its registry over OTLP', () => {
  let fleet: TestFleet;
  let closeScheduler: () => Promise<void>;
  beforeAll(async () => {
    const env = { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: receiver.url };
    fleet = await startFleet({ yaml: 'metrics: { otlp: { intervalMs: 1000 } }', env });
    const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
    closeScheduler = () => scheduler.close();
  }, 30_000);
  afterAll(async () => {
    await closeScheduler?.();
    await fleet?.stop();
  });

  it('producer, scheduler and gpu-worker: named interfleet metrics, with the right types and resources', async () => {
    for (let i = 0; i < 3; i++) expect((await fetch(`${fleet.producer.url}/v1/models`)).status).toBe(200);
    const requests = await until(async () => {
      const m = receiver.latest('producer', 'interfleet_http_requests_total');
      const p = m?.sum?.dataPoints.find((d) => attrs(d.attributes).route === '/v1/models');
      return p && pointValue(p) >= 3 ? m : undefined;
    }, 15_000);
    expect(requests.sum!.isMonotonic).toBe(true);
    expect(requests.resource['service.instance.id']).toBeTruthy();
    const latency = receiver.latest('producer', 'interfleet_realtime_latency_seconds')!;
    expect(latency.data).toBe('histogram');
    expect(receiver.latest('producer', 'interfleet_queue_jobs')!.data).toBe('gauge');

    const leader = await until(async () => receiver.latest('scheduler', 'interfleet_scheduler_leader'), 15_000);
    expect(leader.data).toBe('gauge');
    expect(leader.resource['service.name']).toBe('scheduler');
    const worker = await until(
      async () =>
        receiver.metrics.find((m) => m.resource['service.name'] === 'gpu-worker' && m.name.startsWith('interfleet_')),
      15_000,
    );
    expect(worker).toBeDefined();
    // The default process metrics come along (one registry, one source).
    expect(receiver.latest('gpu-worker', 'process_cpu_seconds_total')!.data).toBe('sum');
  }, 40_000);
});

describe('a collector that is not there', () => {
  it('is logged; the role serves on and closes', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ level: 'warn' }, sink);
    // A port that refuses: the receiver, closed.
    const gone = await startOtlpReceiver();
    await gone.close();
    const config = testConfig('metrics: { otlp: { intervalMs: 1000, timeoutMs: 1500 } }', {
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: gone.url,
    });
    const producer = await startProducer(config, { logger, port: 0 });
    try {
      await until(async () => (lines.some((l) => l.includes('otlp-metrics')) ? true : undefined), 20_000);
      expect((await fetch(`${producer.url}/v1/models`)).status).toBe(200);
      expect((await fetch(`${producer.url}/metrics`)).status).toBe(200);
    } finally {
      const started = Date.now();
      await producer.close(0);
      expect(Date.now() - started).toBeLessThan(10_000);
    }
    const warned = lines.map((l) => JSON.parse(l) as { level: number; component?: string; msg: string });
    expect(warned.find((l) => l.component === 'otlp-metrics')!.level).toBe(40);
  }, 40_000);
});
