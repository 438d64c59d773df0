/**
 * The kubernetes actuator through the real @kubernetes/client-node against the local API stand-in
 * (test/helpers/kube-api-server.ts) over HTTPS with a throw-away CA: every auth path, observe, scale
 * up and down, the no-op, the scale-in audit, and the errors the loop branches on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { autoscalerConfigSchema, type AutoscalerConfig } from '../../common/autoscale/policy.ts';
import { ActuatorError, type Actuator } from '../../scheduler/autoscaler/actuators/actuator.ts';
import {
  createKubernetesActuator,
  type KubernetesActuatorOptions,
} from '../../scheduler/autoscaler/actuators/kubernetes.ts';
import {
  makeTestCa,
  objectKey,
  startKubeApiServer,
  writeKubeconfig,
  writeServiceAccount,
  type KubeApiServer,
  type TestCa,
} from '../helpers/kube-api-server.ts';

const TOKEN = 'scheduler-token';
const NS = 'interfleet';
const DEPLOYMENT = 'interfleet-gpu-worker-default';
const labels = { 'app.kubernetes.io/name': 'interfleet-gpu-worker', 'interfleet/pool': 'default' };
const scalePath = `/apis/apps/v1/namespaces/${NS}/deployments/${DEPLOYMENT}/scale`;

let dir: string;
let ca: TestCa;
let otherCa: TestCa;
let server: KubeApiServer;
let lines: Record<string, unknown>[];
const logger = () => pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });

const k8sConfig = (over: Partial<AutoscalerConfig['kubernetes']> = {}): AutoscalerConfig['kubernetes'] => ({
  ...autoscalerConfigSchema.parse({}).kubernetes,
  ...over,
});

/** An actuator on kubeconfig auth with the right CA and token. */
function actuator(opts: Partial<KubernetesActuatorOptions> = {}): Actuator {
  const file = writeKubeconfig(
    join(dir, 'kube', 'config'),
    [{ name: 'oke', server: server.url, token: TOKEN, caFile: '../ca.crt' }],
    'oke',
  );
  return createKubernetesActuator(k8sConfig({ kubeconfig: file }), { logger: logger(), env: {}, ...opts });
}

/** The error `work` rejects with. */
async function failure(work: Promise<unknown>): Promise<ActuatorError> {
  const err: unknown = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ActuatorError);
  return err as ActuatorError;
}

const patches = () => server.requests.filter((r) => r.method === 'PATCH');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kube-actuator-'));
  ca = makeTestCa(dir);
  otherCa = makeTestCa(mkdtempSync(join(dir, 'other-')));
  server = await startKubeApiServer({ token: TOKEN, tls: { cert: ca.cert, key: ca.key } });
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  lines = [];
  server.reset();
  server.addDeployment(NS, DEPLOYMENT, { replicas: 2, readyReplicas: 1, matchLabels: labels });
});

describe('auth', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  const port = () => new URL(server.url).port;
  /** loadFromCluster reads host and port from process.env, whatever `env` says. */
  const inCluster = (caCert: string): Partial<KubernetesActuatorOptions> => {
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = port();
    const prefix = writeServiceAccount(mkdtempSync(join(dir, 'sa-')), { token: TOKEN, caCert, namespace: NS });
    return { env: { KUBERNETES_SERVICE_HOST: '127.0.0.1' }, inClusterPathPrefix: prefix };
  };
  const kubeconfig = (current: string): string =>
    writeKubeconfig(
      join(mkdtempSync(join(dir, 'kc-')), 'config'),
      [
        { name: 'oke', server: server.url, token: TOKEN, caFile: ca.caFile },
        { name: 'stale', server: server.url, token: 'revoked', caFile: ca.caFile },
      ],
      current,
    );

  it.each([
    ['kubeconfig, its current-context', () => ({ cfg: k8sConfig({ kubeconfig: kubeconfig('oke') }), opts: {} })],
    [
      'kubeconfig, a context other than the current one',
      () => ({ cfg: k8sConfig({ kubeconfig: kubeconfig('stale'), context: 'oke' }), opts: {} }),
    ],
    ['in-cluster (service-account token and ca.crt)', () => ({ cfg: k8sConfig(), opts: inCluster(ca.caCert) })],
    ['$KUBECONFIG', () => ({ cfg: k8sConfig(), opts: { env: { KUBECONFIG: kubeconfig('oke') } } })],
    [
      '$KUBECONFIG before in-cluster (the scheduler on GKE: in-cluster there is the wrong cluster)',
      () => {
        const wrongCluster = inCluster(otherCa.caCert);
        return {
          cfg: k8sConfig(),
          opts: { ...wrongCluster, env: { ...wrongCluster.env, KUBECONFIG: kubeconfig('oke') } },
        };
      },
    ],
    [
      'a $KUBECONFIG list, merged',
      () => {
        const empty = writeKubeconfig(join(mkdtempSync(join(dir, 'kc-')), 'config'), [], '');
        return { cfg: k8sConfig(), opts: { env: { KUBECONFIG: [empty, kubeconfig('oke')].join(':') } } };
      },
    ],
  ])('%s: observes through the real client', async (_name, setup) => {
    const { cfg, opts } = setup();
    const a = createKubernetesActuator(cfg, { logger: logger(), env: {}, ...opts });
    expect(await a.observe('default', Promise.resolve([]))).toEqual({ desired: 2, ready: 1 });
    expect(server.requests.map((r) => r.status)).toEqual([200, 200]);
  });

  it('sends the wrong token when told to use the stale context: 401, retryable', async () => {
    const a = createKubernetesActuator(k8sConfig({ kubeconfig: kubeconfig('stale') }), { logger: logger(), env: {} });
    const err = await failure(a.observe('default', Promise.resolve([])));
    expect(err.message).toContain('HTTP 401');
    expect(err.retryable).toBe(true);
  });

  it('verifies the server against ca.crt: another CA fails as unreachable', async () => {
    const a = createKubernetesActuator(k8sConfig(), { logger: logger(), ...inCluster(otherCa.caCert) });
    const err = await failure(a.observe('default', Promise.resolve([])));
    expect(err.message).toContain('Kubernetes API not reached');
    expect(err.retryable).toBe(true);
    expect(server.requests).toEqual([]);
  });

  it.each([
    [
      'a context the kubeconfig lacks',
      () => k8sConfig({ kubeconfig: kubeconfig('oke'), context: 'gke' }),
      /"gke" is not in/,
    ],
    ['a kubeconfig that does not exist', () => k8sConfig({ kubeconfig: join(dir, 'missing') }), /cannot load/],
  ])('refuses %s at creation, not retryable', (_name, cfg, message) => {
    let err: unknown;
    try {
      createKubernetesActuator(cfg(), { logger: logger(), env: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ActuatorError);
    expect((err as ActuatorError).message).toMatch(message);
    expect((err as ActuatorError).retryable).toBe(false);
  });
});

describe('observe and scale', () => {
  it('reports spec.replicas of the scale and status.readyReplicas (0 when the API omits it)', async () => {
    const a = actuator();
    const d = server.deployments.get(objectKey(NS, DEPLOYMENT))!;
    expect(await a.observe('default', Promise.resolve([]))).toEqual({ desired: 2, ready: 1 });
    d.readyReplicas = 0;
    expect(await a.observe('default', Promise.resolve([]))).toEqual({ desired: 2, ready: 0 });
    expect(server.requests.map((r) => r.path)).toContain(scalePath);
  });

  it.each([
    ['up', 2, 5],
    ['down', 2, 1],
    ['to zero', 2, 0],
    ['up from zero', 0, 3],
  ])('scales %s with one merge patch of the scale subresource', async (_name, from, to) => {
    server.deployments.get(objectKey(NS, DEPLOYMENT))!.replicas = from;
    await actuator().scale('default', to, new Map());
    expect(server.deployments.get(objectKey(NS, DEPLOYMENT))!.replicas).toBe(to);
    expect(patches()).toEqual([
      expect.objectContaining({
        path: scalePath,
        contentType: 'application/merge-patch+json',
        body: { spec: { replicas: to } },
        status: 200,
      }),
    ]);
  });

  it('does not patch when spec.replicas already matches, even mid-rollout with pods unready', async () => {
    const d = server.deployments.get(objectKey(NS, DEPLOYMENT))!;
    d.replicas = 3;
    d.readyReplicas = 1;
    await actuator().scale('default', 3, new Map());
    expect(patches()).toEqual([]);
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET ${scalePath}`]);
  });

  it('before a scale-in, warns about pods without a deletion cost and names the idlest', async () => {
    server.deployments.get(objectKey(NS, DEPLOYMENT))!.replicas = 3;
    const cost = (n: number) => ({ 'controller.kubernetes.io/pod-deletion-cost': String(n) });
    server.addPod(NS, 'busy', labels, cost(7));
    server.addPod(NS, 'idle', labels, cost(0));
    server.addPod(NS, 'fresh', labels);
    server.addPod(NS, 'other-pool', { ...labels, 'interfleet/pool': 'other' });
    await actuator().scale('default', 1, new Map());
    const list = server.requests.find((r) => r.path === `/api/v1/namespaces/${NS}/pods`);
    expect(list?.query.get('labelSelector')).toBe(
      'app.kubernetes.io/name=interfleet-gpu-worker,interfleet/pool=default',
    );
    expect(lines.find((l) => l.level === 40)).toMatchObject({ pods: ['fresh'] });
    expect(lines.find((l) => Array.isArray(l.idlest))?.idlest).toEqual([{ pod: 'idle', cost: 0 }, { pod: 'fresh' }]);
    expect(server.deployments.get(objectKey(NS, DEPLOYMENT))!.replicas).toBe(1);
  });

  it('scales in even when the pods cannot be read', async () => {
    server.fail({ path: /\/pods$/, status: 403 });
    await actuator().scale('default', 1, new Map());
    expect(server.deployments.get(objectKey(NS, DEPLOYMENT))!.replicas).toBe(1);
    expect(lines.some((l) => l.level === 40 && String(l.msg).includes('pods not read'))).toBe(true);
  });

  it.each([[-1], [1.5], [Number.NaN]])('refuses %s replicas without a request', async (n) => {
    const err = await failure(actuator().scale('default', n, new Map()));
    expect(err.retryable).toBe(false);
    expect(server.requests).toEqual([]);
  });
});

describe('errors', () => {
  it.each([
    {
      name: 'a missing Deployment',
      pool: 'missing',
      fault: undefined,
      message: 'Deployment interfleet-gpu-worker-missing not found in namespace interfleet (HTTP 404)',
      retryable: false,
    },
    {
      name: 'RBAC refusing the scale',
      pool: 'default',
      fault: { path: /\/scale$/, status: 403 },
      message: 'forbidden to get deployments/scale interfleet/interfleet-gpu-worker-default',
      retryable: false,
    },
    {
      name: 'an API server error',
      pool: 'default',
      fault: { status: 500 },
      message: 'HTTP 500',
      retryable: true,
    },
    {
      name: 'an invalid patch',
      pool: 'default',
      fault: { method: 'PATCH', status: 422 },
      message: 'patch deployments/scale interfleet/interfleet-gpu-worker-default refused (HTTP 422)',
      retryable: false,
    },
  ])('$name becomes an ActuatorError (retryable: $retryable)', async ({ pool, fault, message, retryable }) => {
    if (fault) server.fail(fault);
    const err = await failure(actuator().scale(pool, 4, new Map()));
    expect(err.message).toContain(message);
    expect(err.retryable).toBe(retryable);
  });

  it('names the verbs the Role needs on a 403', async () => {
    server.fail({ status: 403 });
    const err = await failure(actuator().observe('default', Promise.resolve([])));
    expect(err.message).toMatch(/needs get and patch on deployments\/scale, get on deployments/);
  });

  it('gives up on an API server that never answers, retryable', async () => {
    server.fail({ status: 'hang', times: 2 });
    const started = Date.now();
    const err = await failure(actuator({ requestTimeoutMs: 300 }).observe('default', Promise.resolve([])));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err.retryable).toBe(true);
  });

  it('treats a refused connection as retryable', async () => {
    const gone = await startKubeApiServer({ token: TOKEN, tls: { cert: ca.cert, key: ca.key } });
    await gone.close();
    const file = writeKubeconfig(
      join(dir, 'gone', 'config'),
      [{ name: 'x', server: gone.url, token: TOKEN, caFile: ca.caFile }],
      'x',
    );
    const a = createKubernetesActuator(k8sConfig({ kubeconfig: file }), { logger: logger(), env: {} });
    const err = await failure(a.observe('default', Promise.resolve([])));
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('not reached');
  });
});
