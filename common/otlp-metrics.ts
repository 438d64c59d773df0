/**
 * The optional OTLP export of a role's metrics (metrics.otlp; Cloud Monitoring through an
 * OpenTelemetry Collector, README: Metrics). The prom-client registries stay the one source of
 * truth: nothing is instrumented twice. A MetricProducer reads each registry's getMetricsAsJSON()
 * at every export and hands the OpenTelemetry SDK the same series (promToOtel: counters as
 * cumulative monotonic sums, gauges as gauges, histograms as explicit-bucket histograms), which a
 * PeriodicExportingMetricReader sends as OTLP/HTTP protobuf every `intervalMs`.
 *
 * An export that fails (collector down, refused) never reaches the role: the SDK retries it with
 * backoff within the export's timeout, then drops that interval's export and reports through its
 * diagnostic logger, which logs here at warn. The next interval sends the cumulative values again,
 * so nothing is lost but the resolution of the intervals missed.
 */
import { hostname } from 'node:os';
import { diag, DiagLogLevel, ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  PeriodicExportingMetricReader,
  type CollectionResult,
  type MetricData,
  type MetricProducer,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

export type OtlpConfig = Config['metrics']['otlp'];

/** The instrumentation scope the bridged series are reported under. */
export const SCOPE = { name: 'interfleet/prom-client' } as const;

const toHrTime = (ms: number): HrTime => [Math.floor(ms / 1000), Math.round((ms % 1000) * 1e6)];

type Labels = Partial<Record<string, string | number>>;
/** A value of getMetricsAsJSON(): a histogram's also name their series (`_bucket`, `_sum`, `_count`). */
type PromValue = MetricValue<string> & { metricName?: string };

/** Prometheus labels as OTel attributes, without the histogram's `le`. */
function attributesOf(labels: Labels): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(labels)) if (k !== 'le' && v !== undefined) out[k] = String(v);
  return out;
}

/** One series' key: its labels without `le`, in name order. */
const seriesKey = (labels: Labels): string =>
  JSON.stringify(
    Object.entries(labels)
      .filter(([k]) => k !== 'le')
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );

interface HistogramSeries {
  attributes: Attributes;
  buckets: { le: number; cumulative: number }[];
  sum: number;
  count: number;
}

/**
 * A prom-client histogram's values (`_bucket` with `le`, `_sum`, `_count`, per label set) as OTel
 * explicit-bucket points: boundaries are the finite `le`s; counts per bucket, not cumulative, the
 * last one (above the highest boundary) from `_count`.
 */
function histogramPoints(metric: MetricObjectWithValues<MetricValue<string>>, start: HrTime, end: HrTime) {
  const series = new Map<string, HistogramSeries>();
  for (const v of metric.values as PromValue[]) {
    const key = seriesKey(v.labels);
    let s = series.get(key);
    if (!s) series.set(key, (s = { attributes: attributesOf(v.labels), buckets: [], sum: 0, count: 0 }));
    if (v.metricName === `${metric.name}_bucket`) {
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
      if (Number.isFinite(le)) s.buckets.push({ le, cumulative: v.value });
    } else if (v.metricName === `${metric.name}_sum`) s.sum = v.value;
    else if (v.metricName === `${metric.name}_count`) s.count = v.value;
  }
  return [...series.values()].map((s) => {
    const sorted = s.buckets.sort((a, b) => a.le - b.le);
    const counts = sorted.map((b, i) => b.cumulative - (i === 0 ? 0 : sorted[i - 1]!.cumulative));
    counts.push(s.count - (sorted.at(-1)?.cumulative ?? 0));
    return {
      startTime: start,
      endTime: end,
      attributes: s.attributes,
      value: { buckets: { boundaries: sorted.map((b) => b.le), counts }, sum: s.sum, count: s.count },
    };
  });
}

/**
 * A registry's metrics (getMetricsAsJSON) as OTel metric data, cumulative from `startMs`. Pure.
 * Summaries (interfleet has none) are left out.
 */
export function promToOtel(
  metrics: readonly MetricObjectWithValues<MetricValue<string>>[],
  startMs: number,
  nowMs: number,
): MetricData[] {
  const start = toHrTime(startMs);
  const end = toHrTime(nowMs);
  const out: MetricData[] = [];
  for (const m of metrics) {
    const descriptor = { name: m.name, description: m.help, unit: '', valueType: ValueType.DOUBLE };
    const points = () =>
      m.values.map((v) => ({ startTime: start, endTime: end, attributes: attributesOf(v.labels), value: v.value }));
    // prom-client's MetricType is a type-only enum: its values are these strings.
    const type = m.type as unknown as string;
    if (type === 'counter') {
      out.push({
        descriptor,
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: points(),
      });
    } else if (type === 'gauge') {
      out.push({
        descriptor,
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.GAUGE,
        dataPoints: points(),
      });
    } else if (type === 'histogram') {
      out.push({
        descriptor,
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints: histogramPoints(m, start, end),
      });
    }
  }
  return out;
}

/** The SDK's view of prom-client registries: read at each collection, nothing kept between. */
export class PromRegistryProducer implements MetricProducer {
  private readonly startMs = Date.now();

  constructor(private readonly registries: readonly Registry[]) {}

  async collect(): Promise<CollectionResult> {
    const errors: unknown[] = [];
    const scopeMetrics: ScopeMetrics[] = [];
    for (const registry of this.registries) {
      try {
        const json = await registry.getMetricsAsJSON();
        scopeMetrics.push({ scope: SCOPE, metrics: promToOtel(json, this.startMs, Date.now()) });
      } catch (err) {
        errors.push(err);
      }
    }
    // The reader keeps the MeterProvider's resource; this one is not used.
    return { resourceMetrics: { resource: resourceFromAttributes({}), scopeMetrics }, errors };
  }
}

export interface OtlpExport {
  /** Exports now (tests, and a last export before exit). */
  flush(): Promise<void>;
  /** A last export, then stops. */
  close(): Promise<void>;
}

/**
 * The SDK's diagnostics (failed exports among them) into the logs of the exports running: the
 * SDK has one global diagnostic logger per process, so it is set once and forwards to each.
 */
const diagSinks = new Set<Logger>();
function routeDiagnostics(): void {
  if (diagSinks.size > 0) return;
  const each =
    (level: 'warn' | 'debug') =>
    (msg: string, ...args: unknown[]) => {
      for (const log of diagSinks) log[level]({ component: 'otlp-metrics', args }, msg);
    };
  diag.setLogger(
    { error: each('warn'), warn: each('warn'), info: each('debug'), debug: () => undefined, verbose: () => undefined },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
}

/**
 * Starts exporting `registries` over OTLP when metrics.otlp.endpoint is set; undefined otherwise.
 * `service.name` is the role, `service.instance.id` the process (POD_NAME where Kubernetes gives it).
 */
export function startOtlpMetrics(
  cfg: OtlpConfig,
  opts: { role: string; registries: readonly Registry[]; logger: Logger; env?: NodeJS.ProcessEnv },
): OtlpExport | undefined {
  if (cfg.endpoint === undefined) return undefined;
  routeDiagnostics();
  diagSinks.add(opts.logger);
  const env = opts.env ?? process.env;
  const resource = resourceFromAttributes({
    'service.name': opts.role,
    'service.namespace': 'interfleet',
    'service.instance.id': env.POD_NAME ?? `${hostname()}-${process.pid}`,
    ...cfg.resourceAttributes,
  });
  const reader = new PeriodicExportingMetricReader({
    exporter: new OTLPMetricExporter({
      url: cfg.endpoint,
      headers: cfg.headers,
      timeoutMillis: cfg.timeoutMs,
    }),
    exportIntervalMillis: cfg.intervalMs,
    // The SDK refuses a timeout longer than the interval.
    exportTimeoutMillis: Math.min(cfg.timeoutMs, cfg.intervalMs),
    metricProducers: [new PromRegistryProducer(opts.registries)],
  });
  const provider = new MeterProvider({ resource, readers: [reader] });
  opts.logger.info({ endpoint: cfg.endpoint, intervalMs: cfg.intervalMs }, 'exporting metrics over OTLP');
  return {
    flush: () => provider.forceFlush(),
    close: async () => {
      await provider.shutdown().catch((err: unknown) => opts.logger.warn({ err }, 'OTLP export not closed'));
      diagSinks.delete(opts.logger);
    },
  };
}
