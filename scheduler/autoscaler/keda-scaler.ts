/**
 * A KEDA External Scaler (gRPC, KEDA's externalscaler.proto beside this file) for teams whose GPU pools
 * KEDA already scales: it serves interfleet's own decision for each pool, so KEDA applies it instead of
 * computing one from a single Redis list (which misses BullMQ's prioritized set).
 *
 * A ScaledObject names its pool in the trigger metadata (`pool: <name>`, passed on every call as
 * scaledObjectRef.scalerMetadata). GetMetricSpec announces one metric, `interfleet-<pool>-desired-replicas`,
 * with targetSize 1; KEDA's external metrics default to the AverageValue target, for which HPA computes
 * replicas = ceil(metric / target) = the metric, so the replicas HPA applies are interfleet's `desired`.
 * GetMetrics answers `desired`, IsActive answers `active` (KEDA's step between zero and one replica), and
 * StreamIsActive (trigger type `external-push`) pushes `active` at once and then whenever it changes.
 *
 * Errors are gRPC status codes that KEDA logs: INVALID_ARGUMENT (no `pool` in the metadata), NOT_FOUND
 * (a pool interfleet does not run), UNAVAILABLE (no recent decision: before the leader's first pass, or no
 * leader for a while). On an error KEDA's HPA keeps the current replica count, which is the hold we want on
 * missing data.
 *
 * Every scheduler replica answers, the standby too: KEDA holds one long-lived connection to whichever
 * replica a Service gave it, so a standby that refused would leave the pool unscaled for as long as the
 * connection lives. A standby answers the leader's last decision from its explain record in Redis
 * (standby-demand.ts).
 *
 * grpc-js and the proto are loaded when the scaler starts, not on import: it is off by default
 * (`autoscaler.keda.port` -1) and loading grpc-js with proto-loader costs 16–18 MiB of RSS and
 * 107–139 ms (four runs on the 2-core dev VM, 2026-12-07, of: node --input-type=module -e "const r =
 * process.memoryUsage().rss, t = performance.now(); await Promise.all([import('@grpc/grpc-js'),
 * import('@grpc/proto-loader')]); console.log(performance.now() - t, (process.memoryUsage().rss - r) / 2 ** 20)").
 */
import { fileURLToPath } from 'node:url';
import type * as Grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/logger.ts';

export interface KedaDemand {
  /** The replicas interfleet's autoscaler decided for the pool. */
  desired: number;
  /** The pool has work or must stay up (KEDA scales to zero only when this is false). */
  active: boolean;
}

export interface KedaScalerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The last decision for a pool; undefined while there is none recent enough to serve. */
  demand: (pool: string) => KedaDemand | undefined | Promise<KedaDemand | undefined>;
  knownPool: (pool: string) => boolean;
  logger: Logger;
  /** How often an open StreamIsActive re-reads `demand` (default 5000). */
  streamEveryMs?: number;
}

export interface KedaScaler {
  /** The bound port (the ephemeral one when asked for 0). */
  readonly port: number;
  /** Ends every open stream, then stops the server. */
  close(): Promise<void>;
}

/**
 * Beside this module both from source and in a bundle: bin/build copies it next to dist/<role>/main.js
 * for the roles that bundle the scheduler, and import.meta.url is the bundle's own file there.
 */
export const kedaProtoPath = fileURLToPath(new URL('./externalscaler.proto', import.meta.url));

/** Field names as in the proto, int64 as numbers, absent fields as their defaults (a client uses the same). */
export const kedaProtoOptions = { keepCase: true, longs: Number, defaults: true };

export const kedaMetricName = (pool: string): string => `interfleet-${pool}-desired-replicas`;

/** Calls still open this long after close() are cut (forceShutdown). */
const shutdownGraceMs = 2000;

interface ScaledObjectRef {
  name: string;
  namespace: string;
  scalerMetadata: Record<string, string>;
}
interface IsActiveResponse {
  result: boolean;
}
interface GetMetricsRequest {
  scaledObjectRef: ScaledObjectRef | null;
  metricName: string;
}

/** A refusal with the gRPC status KEDA sees (serverErrorToStatus reads `code` and `details`). */
class ScalerRefusal extends Error {
  constructor(
    readonly code: Grpc.status,
    readonly details: string,
  ) {
    super(details);
    this.name = 'ScalerRefusal';
  }
}

export async function startKedaScaler(opts: KedaScalerOptions): Promise<KedaScaler> {
  const [grpc, protoLoader] = await Promise.all([import('@grpc/grpc-js'), import('@grpc/proto-loader')]);
  const { status } = grpc;
  const logger = opts.logger.child({ component: 'keda-scaler' });
  const everyMs = opts.streamEveryMs ?? 5000;
  const definition = protoLoader.loadSync(kedaProtoPath, kedaProtoOptions);
  const pkg = grpc.loadPackageDefinition(definition) as {
    externalscaler: { ExternalScaler: Grpc.ServiceClientConstructor };
  };

  /** The pool a ScaledObject names and its current demand, or the refusal KEDA gets. */
  async function lookup(ref: ScaledObjectRef | null): Promise<{ pool: string; demand: KedaDemand }> {
    const who = ref ? `ScaledObject ${ref.namespace}/${ref.name}` : 'a request without a ScaledObjectRef';
    const pool = ref?.scalerMetadata.pool?.trim();
    if (!pool) throw new ScalerRefusal(status.INVALID_ARGUMENT, `${who}: trigger metadata has no "pool"`);
    if (!opts.knownPool(pool)) {
      throw new ScalerRefusal(status.NOT_FOUND, `${who}: pool "${pool}" is not configured in interfleet`);
    }
    const demand = await opts.demand(pool);
    if (!demand) {
      throw new ScalerRefusal(
        status.UNAVAILABLE,
        `${who}: no recent autoscaling decision for pool "${pool}" (no leader yet, or its first pass); retry`,
      );
    }
    return { pool, demand };
  }

  /** What an exception becomes on the wire; anything not ours is a bug, answered INTERNAL. */
  function toStatus(err: unknown, method: string): ScalerRefusal {
    const refusal =
      err instanceof ScalerRefusal ? err : new ScalerRefusal(status.INTERNAL, `${method}: ${(err as Error).message}`);
    const level = refusal.code === status.UNAVAILABLE ? 'debug' : refusal.code === status.INTERNAL ? 'error' : 'warn';
    logger[level]({ method, code: status[refusal.code], err: refusal.details }, 'KEDA request refused');
    return refusal;
  }

  function unary<Req, Res>(method: string, answer: (req: Req) => Promise<Res>): Grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      answer(call.request).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toStatus(err, method)),
      );
    };
  }

  /** Open StreamIsActive calls, each with what stops its polling. */
  const streams = new Map<Grpc.ServerWritableStream<ScaledObjectRef, IsActiveResponse>, () => void>();

  const streamIsActive: Grpc.handleServerStreamingCall<ScaledObjectRef, IsActiveResponse> = (call) => {
    void openStream(call);
  };

  async function openStream(call: Grpc.ServerWritableStream<ScaledObjectRef, IsActiveResponse>): Promise<void> {
    let pool: string;
    let active: boolean;
    try {
      ({
        pool,
        demand: { active },
      } = await lookup(call.request));
    } catch (err) {
      call.emit('error', toStatus(err, 'StreamIsActive'));
      return;
    }
    if (call.cancelled) return;
    let polling = false;
    const poll = async (): Promise<void> => {
      if (polling) return; // a slow Redis read: no second one on top
      polling = true;
      try {
        const next = (await lookup(call.request)).demand.active;
        if (streams.has(call) && next !== active) call.write({ result: (active = next) });
      } catch (err) {
        // No decision for a while (leadership moving): hold the last answer rather than guess.
        if (err instanceof ScalerRefusal && err.code === status.UNAVAILABLE) return;
        if (!streams.has(call)) return;
        forget();
        call.emit('error', toStatus(err, 'StreamIsActive'));
      } finally {
        polling = false;
      }
    };
    const timer = setInterval(() => void poll(), everyMs);
    const forget = (): void => {
      clearInterval(timer);
      streams.delete(call);
    };
    streams.set(call, forget);
    call.once('cancelled', forget);
    call.once('finish', forget);
    // KEDA wants the current state on open, not only the next change.
    call.write({ result: active });
    logger.debug({ pool, active }, 'StreamIsActive opened');
  }

  const server = new grpc.Server();
  server.addService(pkg.externalscaler.ExternalScaler.service, {
    IsActive: unary('IsActive', async (ref: ScaledObjectRef): Promise<IsActiveResponse> => ({
      result: (await lookup(ref)).demand.active,
    })),
    StreamIsActive: streamIsActive,
    GetMetricSpec: unary('GetMetricSpec', async (ref: ScaledObjectRef) => ({
      metricSpecs: [{ metricName: kedaMetricName((await lookup(ref)).pool), targetSize: 1, targetSizeFloat: 1 }],
    })),
    GetMetrics: unary('GetMetrics', async (req: GetMetricsRequest) => {
      // KEDA sends back GetMetricSpec's name (less its `sN-` prefix); one metric per pool, so it is not checked.
      const { pool, demand } = await lookup(req.scaledObjectRef);
      const metricName = req.metricName || kedaMetricName(pool);
      return { metricValues: [{ metricName, metricValue: demand.desired, metricValueFloat: demand.desired }] };
    }),
    // StreamMetricSpec stays unimplemented: the target is always 1 (see externalscaler.proto's header).
  });

  // Plaintext: TLS belongs to the service mesh between the clusters for now; KEDA's
  // enableTLS/caCert/tlsClientCert support is a follow-up here.
  const address = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(new Error(`KEDA external scaler: cannot listen on ${address}`, { cause: err })) : resolve(bound),
    ),
  );
  logger.info({ host: opts.host, port }, 'KEDA external scaler listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        // A clean end (OK): KEDA reads EOF and reopens the stream after 2 s, on whichever replica answers.
        // Stop the polling first: a poll between end() and 'finish' would write after end, and the
        // stream would then close with that error instead of OK.
        for (const [call, forget] of [...streams]) {
          forget();
          call.end();
        }
        const force = setTimeout(() => server.forceShutdown(), shutdownGraceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          logger.info('KEDA external scaler closed');
          resolve();
        });
      })),
  };
}
