/**
 * The KEDA External Scaler (scheduler/autoscaler/keda-scaler.ts) through a real grpc-js client built
 * from the same externalscaler.proto, against the real server on loopback (an ephemeral port): the
 * metric spec, the metric value and the active flag KEDA reads, StreamIsActive's first answer and its
 * changes, the refusals KEDA logs (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE), and close(). No Redis
 * and no KEDA: the demand is a Map the tests change. Waits poll for a condition, never sleep.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import {
  kedaMetricName,
  kedaProtoOptions,
  kedaProtoPath,
  startKedaScaler,
  type KedaDemand,
  type KedaScaler,
} from '../../scheduler/autoscaler/keda-scaler.ts';
import { until } from '../helpers/until.ts';

const STREAM_EVERY_MS = 50;
/** Every call gets a deadline, so a hang fails as DEADLINE_EXCEEDED instead of timing the test out. */
const CALL_MS = 1500;

interface Ref {
  name: string;
  namespace: string;
  scalerMetadata: Record<string, string>;
}
interface IsActiveResponse {
  result: boolean;
}
interface GetMetricSpecResponse {
  metricSpecs: { metricName: string; targetSize: number; targetSizeFloat: number }[];
}
interface GetMetricsResponse {
  metricValues: { metricName: string; metricValue: number; metricValueFloat: number }[];
}
type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
interface ScalerClient extends grpc.Client {
  IsActive(req: Ref, opts: grpc.CallOptions, cb: Callback<IsActiveResponse>): grpc.ClientUnaryCall;
  GetMetricSpec(req: Ref, opts: grpc.CallOptions, cb: Callback<GetMetricSpecResponse>): grpc.ClientUnaryCall;
  GetMetrics(
    req: { scaledObjectRef?: Ref; metricName: string },
    opts: grpc.CallOptions,
    cb: Callback<GetMetricsResponse>,
  ): grpc.ClientUnaryCall;
  StreamIsActive(req: Ref, opts?: grpc.CallOptions): grpc.ClientReadableStream<IsActiveResponse>;
}

const { ExternalScaler } = (
  grpc.loadPackageDefinition(protoLoader.loadSync(kedaProtoPath, kedaProtoOptions)) as {
    externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
  }
).externalscaler;

/** A ScaledObject's reference as KEDA sends it: the trigger metadata carries the pool. */
const ref = (pool?: string, name = `gpu-worker-${pool ?? 'none'}`): Ref => ({
  name,
  namespace: 'interfleet',
  scalerMetadata: pool === undefined ? {} : { pool },
});

let demands: Map<string, KedaDemand>;
/** How often the scaler read each pool's demand (an open stream re-reads it every STREAM_EVERY_MS). */
let reads: Map<string, number>;
let pools: Set<string>;
let scaler: KedaScaler;
let client: ScalerClient;
const cleanups: (() => void | Promise<void>)[] = [];

function newClient(port: number): ScalerClient {
  const c = new ExternalScaler(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as ScalerClient;
  cleanups.push(() => c.close());
  return c;
}

beforeEach(async () => {
  demands = new Map([
    ['default', { desired: 3, active: true }],
    ['cold', { desired: 0, active: false }],
  ]);
  // `standby` is configured but has no decision (a standby scheduler, or before the first pass).
  pools = new Set(['default', 'cold', 'standby']);
  reads = new Map();
  scaler = await startKedaScaler({
    host: '127.0.0.1',
    port: 0,
    demand: (pool) => {
      reads.set(pool, (reads.get(pool) ?? 0) + 1);
      return demands.get(pool);
    },
    knownPool: (pool) => pools.has(pool),
    logger: silentLogger(),
    streamEveryMs: STREAM_EVERY_MS,
  });
  cleanups.push(() => scaler.close());
  client = newClient(scaler.port);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + CALL_MS });

function call<Req, Res>(
  method: (req: Req, opts: grpc.CallOptions, cb: Callback<Res>) => grpc.ClientUnaryCall,
  req: Req,
  on: ScalerClient = client,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(on, req, deadline(), (err, res) => (err ? reject(err) : resolve(res!))),
  );
}
const isActive = (r: Ref, on?: ScalerClient) => call(client.IsActive, r, on);
const getMetricSpec = (r: Ref, on?: ScalerClient) => call(client.GetMetricSpec, r, on);
const getMetrics = (r: Ref | undefined, metricName = '', on?: ScalerClient) =>
  call(client.GetMetrics, { ...(r ? { scaledObjectRef: r } : {}), metricName }, on);

/** The gRPC error `work` fails with. */
async function refusal(work: Promise<unknown>): Promise<grpc.ServiceError> {
  const err: unknown = await work.then(
    () => expect.fail('the call succeeded'),
    (e: unknown) => e,
  );
  return err as grpc.ServiceError;
}

/** An open StreamIsActive: the answers so far, and how it ended. */
function openStream(r: Ref) {
  const stream = client.StreamIsActive(r);
  const seen: boolean[] = [];
  const state: { status?: grpc.StatusObject; error?: grpc.ServiceError; ended: boolean } = { ended: false };
  stream.on('data', (m: IsActiveResponse) => seen.push(m.result));
  stream.on('error', (e: grpc.ServiceError) => (state.error = e));
  stream.on('end', () => (state.ended = true));
  stream.on('status', (s: grpc.StatusObject) => (state.status = s));
  cleanups.push(() => stream.cancel());
  return { stream, seen, state };
}

/** Waits until `cond` holds (polled every 20 ms, at most 1 s). */
const waitFor = (cond: () => boolean): Promise<true> => until(async () => (cond() ? true : undefined), 1000);

/** Waits until an open stream has re-read `pool`'s demand twice more (so it saw the current one). */
async function polledTwice(pool: string): Promise<void> {
  const from = reads.get(pool) ?? 0;
  await waitFor(() => (reads.get(pool) ?? 0) >= from + 2);
}

describe('KEDA external scaler', () => {
  it('announces one metric per pool, interfleet-<pool>-desired-replicas with target 1', async () => {
    expect(await getMetricSpec(ref('default'))).toEqual({
      metricSpecs: [{ metricName: 'interfleet-default-desired-replicas', targetSize: 1, targetSizeFloat: 1 }],
    });
    const cold = await getMetricSpec(ref('cold'));
    expect(cold.metricSpecs.map((s) => s.metricName)).toEqual([kedaMetricName('cold')]);
    // Trigger metadata with stray whitespace still names the pool.
    expect((await getMetricSpec(ref(' default '))).metricSpecs[0]?.metricName).toBe(kedaMetricName('default'));
  });

  it("answers GetMetrics with the demand's desired, read on every call", async () => {
    const metricName = kedaMetricName('default');
    expect(await getMetrics(ref('default'), metricName)).toEqual({
      metricValues: [{ metricName, metricValue: 3, metricValueFloat: 3 }],
    });
    demands.set('default', { desired: 7, active: true });
    expect((await getMetrics(ref('default'), metricName)).metricValues[0]).toMatchObject({
      metricValue: 7,
      metricValueFloat: 7,
    });
    // KEDA sends the name back; without one the answer names the pool's metric.
    expect(await getMetrics(ref('cold'))).toEqual({
      metricValues: [{ metricName: kedaMetricName('cold'), metricValue: 0, metricValueFloat: 0 }],
    });
  });

  it("answers IsActive with the demand's active", async () => {
    expect(await isActive(ref('default'))).toEqual({ result: true });
    expect(await isActive(ref('cold'))).toEqual({ result: false });
    demands.set('cold', { desired: 1, active: true });
    expect(await isActive(ref('cold'))).toEqual({ result: true });
  });

  it('StreamIsActive sends the current state on open, then each change of active', async () => {
    const { seen, state } = openStream(ref('default'));
    await waitFor(() => seen.length >= 1);
    expect(seen).toEqual([true]);

    demands.set('default', { desired: 0, active: false });
    await waitFor(() => seen.length >= 2);
    // `desired` alone changing is no change of `active`: nothing is sent for it.
    demands.set('default', { desired: 2, active: false });
    await polledTwice('default');
    expect(seen).toEqual([true, false]);
    demands.set('default', { desired: 2, active: true });
    await waitFor(() => seen.length >= 3);
    // Only changes are written: a repeat would have filled the list with duplicates first.
    expect(seen).toEqual([true, false, true]);
    expect(state.ended).toBe(false);
    expect(state.error).toBeUndefined();

    const cold = openStream(ref('cold'));
    await waitFor(() => cold.seen.length >= 1);
    expect(cold.seen).toEqual([false]);
  });

  it('StreamIsActive holds its last answer while the decision is missing, and goes on after', async () => {
    const { seen, state } = openStream(ref('default'));
    await waitFor(() => seen.length >= 1);
    // Leadership moving: no decision for a while; the stream stays open, nothing is sent.
    demands.delete('default');
    await polledTwice('default');
    expect(seen).toEqual([true]);
    expect(state.status).toBeUndefined();
    demands.set('default', { desired: 0, active: false });
    await waitFor(() => seen.length >= 2);
    expect(seen).toEqual([true, false]);
    expect(state.error).toBeUndefined();
  });

  it('StreamIsActive ends with NOT_FOUND when its pool leaves the configuration', async () => {
    const { seen, state } = openStream(ref('default'));
    await waitFor(() => seen.length >= 1);
    pools.delete('default');
    await waitFor(() => state.status !== undefined);
    expect(state.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(state.error?.details).toBe(
      'ScaledObject interfleet/gpu-worker-default: pool "default" is not configured in interfleet',
    );
    expect(seen).toEqual([true]);
  });

  describe('refusals', () => {
    const noPool = 'ScaledObject interfleet/gpu-worker-none: trigger metadata has no "pool"';
    const unknown = 'ScaledObject interfleet/gpu-worker-gone: pool "gone" is not configured in interfleet';
    const noDecision =
      'ScaledObject interfleet/gpu-worker-standby: no recent autoscaling decision for pool "standby" (no leader yet, or its first pass); retry';
    const cases = [
      { what: 'no pool in the metadata', ref: ref(), code: grpc.status.INVALID_ARGUMENT, details: noPool },
      {
        what: 'a blank pool',
        ref: ref('  ', 'gpu-worker-none'),
        code: grpc.status.INVALID_ARGUMENT,
        details: noPool,
      },
      { what: 'an unknown pool', ref: ref('gone'), code: grpc.status.NOT_FOUND, details: unknown },
      { what: 'a pool with no decision yet', ref: ref('standby'), code: grpc.status.UNAVAILABLE, details: noDecision },
    ];

    it.each(cases)('$what: every method answers $code', async ({ ref: r, code, details }) => {
      for (const work of [isActive(r), getMetricSpec(r), getMetrics(r, kedaMetricName('x'))]) {
        const err = await refusal(work);
        expect({ code: err.code, details: err.details }).toEqual({ code, details });
      }
      const { seen, state } = openStream(r);
      await waitFor(() => state.status !== undefined);
      expect({ code: state.error?.code, details: state.error?.details }).toEqual({ code, details });
      expect(seen).toEqual([]);
    });

    it('GetMetrics without a ScaledObjectRef is INVALID_ARGUMENT', async () => {
      const err = await refusal(getMetrics(undefined, kedaMetricName('default')));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toBe('a request without a ScaledObjectRef: trigger metadata has no "pool"');
    });

    it('an exception in the demand is INTERNAL, not a crash', async () => {
      demands.get = () => {
        throw new Error('boom');
      };
      const err = await refusal(isActive(ref('default')));
      expect({ code: err.code, details: err.details }).toEqual({
        code: grpc.status.INTERNAL,
        details: 'IsActive: boom',
      });
    });

    it('StreamMetricSpec stays UNIMPLEMENTED (KEDA falls back to GetMetricSpec)', async () => {
      const stream = (
        client as unknown as Record<string, (r: Ref) => grpc.ClientReadableStream<unknown>>
      ).StreamMetricSpec!.call(client, ref('default'));
      const err = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
      expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    });
  });

  it('close() ends open streams cleanly, then stops the server', async () => {
    const a = openStream(ref('default'));
    const b = openStream(ref('cold'));
    await waitFor(() => a.seen.length >= 1 && b.seen.length >= 1);

    const closing = scaler.close();
    expect(scaler.close()).toBe(closing);
    await closing;
    await waitFor(() => a.state.status !== undefined && b.state.status !== undefined);
    for (const { state } of [a, b]) {
      // A clean end (OK, not an error): KEDA reopens the stream, on whichever replica answers.
      expect(state.status?.code).toBe(grpc.status.OK);
      expect(state.ended).toBe(true);
      expect(state.error).toBeUndefined();
    }

    // Nothing listens any more: the old client's channel and a fresh one both fail.
    for (const on of [client, newClient(scaler.port)]) {
      const err = await refusal(isActive(ref('default'), on));
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
    }
  });

  it('refuses to start on a port already taken', async () => {
    // grpc-js logs the failed bind itself (to stderr, at its default ERROR verbosity): quiet here.
    grpc.setLogVerbosity(grpc.logVerbosity.NONE);
    cleanups.push(() => grpc.setLogVerbosity(grpc.logVerbosity.ERROR));
    await expect(
      startKedaScaler({
        host: '127.0.0.1',
        port: scaler.port,
        demand: () => undefined,
        knownPool: () => true,
        logger: silentLogger(),
      }),
    ).rejects.toThrow(`KEDA external scaler: cannot listen on 127.0.0.1:${scaler.port}`);
  });
});
