/**
 * The gpu-worker's pod-deletion-cost: the pure cost and rate-limit rules, then the patches it sends
 * through the real @kubernetes/client-node (in-cluster config: token and ca.crt files, HTTPS) to the
 * local API stand-in, on a manual clock so that coalescing and backoff are exact.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  backoffMs,
  deletionCost,
  DELETION_COST_ANNOTATION,
  planPatch,
  startPodDeletionCost,
  type Clock,
  type LaneLoad,
  type PodDeletionCostDeps,
  type PodDeletionCostHandle,
} from '../../gpu-worker/pod-deletion-cost.ts';
import {
  makeTestCa,
  objectKey,
  startKubeApiServer,
  writeServiceAccount,
  type KubeApiServer,
} from '../helpers/kube-api-server.ts';
import { until } from '../helpers/until.ts';

describe('deletionCost', () => {
  const lanes = (rt: number, bulk: number, training: number): LaneLoad[] => [
    { name: 'realtime', inFlight: rt },
    { name: 'bulk', inFlight: bulk },
    { name: 'training', inFlight: training },
  ];
  it.each([
    ['idle', lanes(0, 0, 0), false, 0],
    ['busy slots add up', lanes(3, 2, 0), false, 5],
    ['a training rank outweighs any slot count', lanes(2, 0, 1), false, 1002],
    ['two ranks', lanes(0, 0, 2), false, 2000],
    ['draining is lowest, however busy', lanes(8, 8, 1), true, -1],
    ['clamped to int32', lanes(0, 0, 3_000_000), false, 2 ** 31 - 1],
    ['no lanes', [], false, 0],
  ])('%s', (_name, l, draining, cost) => {
    expect(deletionCost(l, draining)).toBe(cost);
  });
});

describe('planPatch', () => {
  it.each([
    ['unchanged', 3, { sent: 3, inFlight: false, notBefore: 0 }, 100, { kind: 'none' }],
    ['never sent (even 0)', 0, { sent: undefined, inFlight: false, notBefore: 0 }, 0, { kind: 'now' }],
    ['changed, interval over', 4, { sent: 3, inFlight: false, notBefore: 100 }, 100, { kind: 'now' }],
    [
      'changed inside the interval',
      4,
      { sent: 3, inFlight: false, notBefore: 5000 },
      1200,
      { kind: 'later', inMs: 3800 },
    ],
    ['changed, one in flight', 4, { sent: 3, inFlight: true, notBefore: 0 }, 9000, { kind: 'none' }],
  ])('%s', (_name, desired, state, now, plan) => {
    expect(planPatch(desired, state, now)).toEqual(plan);
  });

  it.each([
    [5000, 1, 10_000],
    [5000, 3, 40_000],
    [5000, 10, 60_000],
    [120_000, 4, 120_000],
  ])('backoff after failures: interval %i, %i failures → %i ms', (interval, failures, ms) => {
    expect(backoffMs(interval, failures)).toBe(ms);
  });
});

/** Timers fire only on advance(); now() moves only then. */
class ManualClock implements Clock {
  private t = 0;
  private timers: { at: number; fn: () => void }[] = [];
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): (() => void) => {
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return () => void (this.timers = this.timers.filter((x) => x !== timer));
  };
  pending = (): number => this.timers.length;
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

describe('startPodDeletionCost', () => {
  const TOKEN = 'worker-token';
  const NS = 'interfleet';
  let dir: string;
  let server: KubeApiServer;
  let kubeConfig: KubeConfig;
  let clock: ManualClock;
  let handle: PodDeletionCostHandle | undefined;
  let lines: Record<string, unknown>[];
  const load = { realtime: 0, bulk: 0, training: 0, draining: false };
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pod-cost-'));
    const ca = makeTestCa(dir);
    server = await startKubeApiServer({ token: TOKEN, tls: { cert: ca.cert, key: ca.key } });
    // The worker's own auth: in-cluster, from the service-account files.
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = new URL(server.url).port;
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromCluster(writeServiceAccount(dir, { token: TOKEN, caCert: ca.caCert, namespace: NS }));
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
    process.env.KUBERNETES_SERVICE_HOST = saved.host;
    process.env.KUBERNETES_SERVICE_PORT = saved.port;
  });
  beforeEach(() => {
    server.reset();
    server.addPod(NS, 'gpu-0', { app: 'w' }, { 'keep.example/me': 'yes' });
    clock = new ManualClock();
    lines = [];
    Object.assign(load, { realtime: 0, bulk: 0, training: 0, draining: false });
  });
  afterEach(async () => {
    await handle?.stop();
    handle = undefined;
  });

  const start = (over: Partial<PodDeletionCostDeps> = {}): PodDeletionCostHandle =>
    (handle = startPodDeletionCost({
      lanes: () => [
        { name: 'realtime', inFlight: () => load.realtime },
        { name: 'bulk', inFlight: () => load.bulk },
        { name: 'training', inFlight: () => load.training },
      ],
      draining: () => load.draining,
      logger: pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) }),
      everyMs: 0,
      minIntervalMs: 5000,
      env: { POD_NAME: 'gpu-0', POD_NAMESPACE: NS },
      kubeConfig,
      clock,
      ...over,
    }));
  const patched = () =>
    server.requests.filter((r) => r.method === 'PATCH').map((r) => (r.status === 200 ? r.body : r.status));
  const costPatch = (v: string) => ({ metadata: { annotations: { [DELETION_COST_ANNOTATION]: v } } });
  const annotation = () => server.pods.get(objectKey(NS, 'gpu-0'))!.annotations[DELETION_COST_ANNOTATION];
  /** Every request answered, and the client's continuation run (it may send the next patch). */
  const settled = async (count: number): Promise<void> => {
    await until(async () =>
      patched().length >= count && server.requests.every((r) => r.status > 0) ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 30));
  };

  it('annotates its pod at start (0 when idle) with a merge patch, keeping other annotations', async () => {
    start();
    await settled(1);
    expect(server.requests[0]).toMatchObject({
      path: `/api/v1/namespaces/${NS}/pods/gpu-0`,
      contentType: 'application/merge-patch+json',
    });
    expect(server.pods.get(objectKey(NS, 'gpu-0'))!.annotations).toEqual({
      'keep.example/me': 'yes',
      [DELETION_COST_ANNOTATION]: '0',
    });
  });

  it('coalesces changes inside minIntervalMs into one trailing patch of the latest value', async () => {
    const h = start();
    await settled(1);
    for (const rt of [1, 2, 3]) {
      clock.advance(1000);
      load.realtime = rt;
      h.update();
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(patched()).toEqual([costPatch('0')]);
    clock.advance(1999);
    expect(patched()).toHaveLength(1);
    clock.advance(1);
    await settled(2);
    expect(patched()).toEqual([costPatch('0'), costPatch('3')]);
  });

  it('sends nothing when the value is back where it was', async () => {
    const h = start();
    await settled(1);
    load.bulk = 2;
    h.update();
    load.bulk = 0;
    h.update();
    clock.advance(10_000);
    load.training = 1;
    h.update();
    await settled(2);
    expect(patched()).toEqual([costPatch('0'), costPatch('1000')]);
  });

  it('reads the lanes on its own cadence without update() calls', async () => {
    start({ everyMs: 2000 });
    await settled(1);
    load.realtime = 4;
    clock.advance(2000); // inside the interval: a trailing patch at 5000
    clock.advance(3000);
    await settled(2);
    expect(annotation()).toBe('4');
  });

  it('marks a draining worker lowest', async () => {
    const h = start();
    await settled(1);
    clock.advance(5000);
    load.realtime = 3;
    load.draining = true;
    h.update();
    await settled(2);
    expect(annotation()).toBe('-1');
  });

  it('never throws: a refused patch is logged, backed off, then retried', async () => {
    server.fail({ method: 'PATCH', status: 403, times: 1 });
    const h = start();
    await settled(1);
    expect(() => h.update()).not.toThrow();
    expect(lines).toEqual([expect.objectContaining({ level: 40, status: 403, retryInMs: 10_000 })]);
    expect(String(lines[0]!.msg)).toContain('RBAC');
    clock.advance(9999);
    expect(patched()).toEqual([403]);
    clock.advance(1);
    await settled(2);
    expect(patched()).toEqual([403, costPatch('0')]);
  });

  it('never throws when the lanes cannot be read', () => {
    const h = start({
      lanes: () => {
        throw new Error('lane gone');
      },
    });
    expect(() => h.update()).not.toThrow();
    expect(lines.some((l) => l.level === 40)).toBe(true);
    expect(server.requests).toEqual([]);
  });

  it('stop() drops a pending trailing patch and its timers', async () => {
    const h = start({ everyMs: 2000 });
    await settled(1);
    load.realtime = 1;
    h.update();
    expect(clock.pending()).toBe(2);
    await h.stop();
    expect(clock.pending()).toBe(0);
    clock.advance(60_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(patched()).toEqual([costPatch('0')]);
  });

  it.each([
    ['outside Kubernetes (no POD_NAME)', { env: {} }],
    [
      'without the API host and no config given',
      { env: { POD_NAME: 'gpu-0', POD_NAMESPACE: NS }, kubeConfig: undefined },
    ],
  ])('does nothing %s', async (_name, over) => {
    const h = start(over);
    h.update();
    await new Promise((r) => setTimeout(r, 50));
    expect(server.requests).toEqual([]);
    expect(clock.pending()).toBe(0);
  });
});
