/**
 * A local OTLP/HTTP metrics receiver: POST /v1/metrics with an ExportMetricsServiceRequest in
 * protobuf (what @opentelemetry/exporter-metrics-otlp-proto sends), decoded with the wire format in
 * otlp/metrics-service.proto through @grpc/proto-loader, and kept flattened for assertions: one
 * entry per metric with its resource's attributes. `failNext(n)` answers the next n exports 503
 * (the exporter retries those).
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { loadSync } from '@grpc/proto-loader';

const definition = loadSync(fileURLToPath(new URL('./otlp/metrics-service.proto', import.meta.url)), {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const exportMethod = (
  definition['opentelemetry.proto.collector.metrics.v1.MetricsService'] as unknown as Record<
    'Export',
    { requestDeserialize(buf: Buffer): unknown }
  >
).Export;

type AnyValue = { value?: 'stringValue' | 'boolValue' | 'intValue' | 'doubleValue' } & Record<string, unknown>;
interface KeyValue {
  key: string;
  value: AnyValue;
}
export interface NumberPoint {
  attributes: KeyValue[];
  asDouble?: number;
  asInt?: number;
  value?: 'asDouble' | 'asInt';
  startTimeUnixNano: number;
  timeUnixNano: number;
}
export interface HistogramPoint {
  attributes: KeyValue[];
  count: number;
  sum?: number;
  bucketCounts: number[];
  explicitBounds: number[];
}
interface DecodedMetric {
  name: string;
  description: string;
  data?: 'gauge' | 'sum' | 'histogram';
  gauge?: { dataPoints: NumberPoint[] };
  sum?: { dataPoints: NumberPoint[]; aggregationTemporality: string; isMonotonic: boolean };
  histogram?: { dataPoints: HistogramPoint[]; aggregationTemporality: string };
}
interface DecodedRequest {
  resourceMetrics: {
    resource?: { attributes: KeyValue[] };
    scopeMetrics: { scope?: { name: string }; metrics: DecodedMetric[] }[];
  }[];
}

/** One metric as received, with its resource's attributes. */
export interface ReceivedMetric extends DecodedMetric {
  resource: Record<string, string>;
}

/** Attributes as a plain object (string values; others as their string). */
export const attrs = (kvs: KeyValue[]): Record<string, string> =>
  Object.fromEntries(kvs.map((kv) => [kv.key, String(kv.value.value ? kv.value[kv.value.value] : '')]));

export const pointValue = (p: NumberPoint): number => (p.value === 'asInt' ? p.asInt! : p.asDouble!);

export interface OtlpReceiver {
  url: string;
  /** Every export request answered so far (also those answered 503). */
  readonly requests: { status: number; contentType: string | undefined }[];
  readonly metrics: ReceivedMetric[];
  failNext(n: number): void;
  /** The last metric named `name` from a resource whose service.name is `service`. */
  latest(service: string, name: string): ReceivedMetric | undefined;
  close(): Promise<void>;
}

const readBody = async (req: IncomingMessage): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const requests: OtlpReceiver['requests'] = [];
  const metrics: ReceivedMetric[] = [];
  let failing = 0;
  const server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const contentType = req.headers['content-type'];
      if (req.method !== 'POST' || req.url !== '/v1/metrics' || contentType !== 'application/x-protobuf') {
        requests.push({ status: 400, contentType });
        res.writeHead(400).end();
        return;
      }
      if (failing > 0) {
        failing--;
        requests.push({ status: 503, contentType });
        res.writeHead(503).end();
        return;
      }
      const decoded = exportMethod.requestDeserialize(body) as DecodedRequest;
      for (const rm of decoded.resourceMetrics) {
        const resource = attrs(rm.resource?.attributes ?? []);
        for (const sm of rm.scopeMetrics) for (const m of sm.metrics) metrics.push({ ...m, resource });
      }
      requests.push({ status: 200, contentType });
      // An empty ExportMetricsServiceResponse: full success.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    })().catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/metrics`,
    requests,
    metrics,
    failNext: (n) => void (failing = n),
    latest: (service, name) => metrics.findLast((m) => m.name === name && m.resource['service.name'] === service),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
