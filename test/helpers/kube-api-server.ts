/**
 * A local stand-in for the few Kubernetes API endpoints that the autoscaler's
 * kubernetes actuator and the gpu-worker's pod-deletion-cost use, for the
 * real @kubernetes/client-node to talk to. In memory, on loopback, port 0;
 * plain HTTP or HTTPS with a certificate from makeTestCa().
 *
 * Implements: GET and PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
 * (an autoscaling/v1 Scale), GET …/deployments/{name}, GET /api/v1/namespaces/{ns}/pods
 * (labelSelector: `k=v`, `k==v`, `k!=v`, comma-joined), GET and PATCH …/pods/{name}.
 * Enforces what the real server does on these paths: a Bearer token (401 Unauthorized);
 * unknown objects (404 NotFound, a v1 Status); PATCH media types (415 for anything but
 * json-patch, merge-patch and strategic-merge-patch; json-patch must be an array, 400);
 * replicas a non-negative integer and annotation values strings, the pod-deletion-cost
 * one a 32-bit integer without sign or leading zero (422 Invalid). Strategic merge is
 * applied as a JSON merge patch: the same for the maps these callers patch.
 * For the training lane's kubernetes runner: POST /apis/batch/v1/namespaces/{ns}/jobs (409 AlreadyExists;
 * 422 without a name, a container with an image, or restartPolicy Never/OnFailure), GET and DELETE
 * …/jobs/{name} (propagationPolicy Background or Foreground deletes the Job's pods too, Orphan leaves
 * them), and GET …/pods/{name}/log (text; follow=true holds the stream open until the pod's container
 * ends or the pod goes). No Job controller runs: a test plays it with startJobPod, appendLog, endJobPod
 * and setJobStatus. Pods carry status.phase and the container's state when a test set them.
 * Not implemented: PUT (the callers never replace), watch, resourceVersion preconditions.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export const PATCH_TYPES = [
  'application/json-patch+json',
  'application/merge-patch+json',
  'application/strategic-merge-patch+json',
] as const;

export interface DeploymentState {
  replicas: number;
  readyReplicas: number;
  matchLabels: Record<string, string>;
}
export interface PodState {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** status.phase and status.containerStatuses, as a test set them (absent: none). */
  status?: Json;
  /** What GET …/log answers; followers get what is appended. */
  log?: string;
}
export interface JobState {
  /** The Job as created. */
  body: Json;
  status: Json;
}
export interface LoggedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  contentType: string | undefined;
  body: unknown;
  status: number;
}
export interface Fault {
  method?: string;
  /** Matched against the path (no query). */
  path?: RegExp;
  /** A status to answer with, or 'hang': accept the request and never answer. */
  status: number | 'hang';
  /** How many matching requests it answers (default: all). */
  times?: number;
}

export interface KubeApiServer {
  readonly url: string;
  readonly deployments: Map<string, DeploymentState>;
  readonly pods: Map<string, PodState>;
  readonly jobs: Map<string, JobState>;
  readonly requests: LoggedRequest[];
  addDeployment(
    ns: string,
    name: string,
    state: Partial<DeploymentState> & { matchLabels: Record<string, string> },
  ): DeploymentState;
  addPod(ns: string, name: string, labels: Record<string, string>, annotations?: Record<string, string>): PodState;
  /** The Job controller's part: its pod, running (container `container`), with the Job's label. */
  startJobPod(ns: string, job: string, pod: string, container: string): PodState;
  /** The pod's container wrote `text` (followers of its log get it now). */
  appendLog(ns: string, pod: string, text: string): void;
  /** The container exited: the pod Succeeded or Failed, the Job Complete or Failed (BackoffLimitExceeded). */
  endJobPod(ns: string, job: string, pod: string, container: string, exitCode: number): void;
  setJobStatus(ns: string, job: string, status: Json): void;
  fail(fault: Fault): void;
  /** Forgets every object, fault and logged request. */
  reset(): void;
  close(): Promise<void>;
}

/** `${ns}/${name}`, the key of both maps. */
export const objectKey = (ns: string, name: string): string => `${ns}/${name}`;

class ApiFailure extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** RFC 7386. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return patch;
  const out: Json = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902, add/replace/remove on object members: all a caller of these endpoints could mean. */
function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new ApiFailure(400, 'BadRequest', 'json patch must be an array of operations');
  const doc = structuredClone(target);
  for (const op of ops) {
    const path = isObj(op) && typeof op.path === 'string' ? op.path.split('/').slice(1) : [];
    const keys = path.map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = keys.pop();
    let node: unknown = doc;
    for (const k of keys) node = isObj(node) ? node[k] : undefined;
    if (!isObj(op) || last === undefined || !isObj(node)) throw new ApiFailure(422, 'Invalid', 'bad json patch path');
    if (op.op === 'remove') delete node[last];
    else if (op.op === 'add' || op.op === 'replace') node[last] = op.value;
    else throw new ApiFailure(422, 'Invalid', `unsupported json patch op ${String(op.op)}`);
  }
  return doc;
}

function applyPatch(target: Json, contentType: string | undefined, body: unknown): Json {
  if (!(PATCH_TYPES as readonly (string | undefined)[]).includes(contentType)) {
    throw new ApiFailure(
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.join(', ')}`,
    );
  }
  const out = contentType === PATCH_TYPES[0] ? jsonPatch(target, body) : mergePatch(target, body);
  return isObj(out) ? out : {};
}

function selectorMatches(selector: string | null, labels: Record<string, string>): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const m = /^\s*([^!=\s]+)\s*(!=|==|=)\s*(\S*)\s*$/.exec(term);
    if (!m) throw new ApiFailure(400, 'BadRequest', `unable to parse requirement: ${term}`);
    return m[2] === '!=' ? labels[m[1]!] !== m[3] : labels[m[1]!] === m[3];
  });
}

const selectorString = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiFailure(400, 'BadRequest', 'request body is not JSON');
  }
}

export async function startKubeApiServer(opts: {
  token: string;
  tls?: { cert: string; key: string };
}): Promise<KubeApiServer> {
  const deployments = new Map<string, DeploymentState>();
  const pods = new Map<string, PodState>();
  const jobs = new Map<string, JobState>();
  /** Open follow=true log streams, by pod key. */
  const followers = new Map<string, Set<ServerResponse>>();
  const endFollowers = (key: string): void => {
    for (const res of followers.get(key) ?? []) res.end();
    followers.delete(key);
  };
  const requests: LoggedRequest[] = [];
  const faults: Fault[] = [];
  let resourceVersion = 1;

  const deploymentJson = (ns: string, name: string, d: DeploymentState): Json => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: ns, resourceVersion: String(resourceVersion) },
    spec: { replicas: d.replicas, selector: { matchLabels: d.matchLabels } },
    // Like the real server: zero counts are omitted.
    status: { replicas: d.replicas || undefined, readyReplicas: d.readyReplicas || undefined },
  });
  const scaleJson = (ns: string, name: string, d: DeploymentState): Json => ({
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: { name, namespace: ns, resourceVersion: String(resourceVersion) },
    spec: { replicas: d.replicas },
    status: { replicas: d.replicas, selector: selectorString(d.matchLabels) },
  });
  const podJson = (ns: string, name: string, p: PodState): Json => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: ns,
      labels: p.labels,
      annotations: p.annotations,
      resourceVersion: String(resourceVersion),
    },
    ...(p.status && { status: p.status }),
  });
  const jobJson = (ns: string, name: string, j: JobState): Json => ({
    ...j.body,
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { ...(j.body.metadata as Json), name, namespace: ns, resourceVersion: String(resourceVersion) },
    status: j.status,
  });
  const statusOk = (name: string): Json => ({
    apiVersion: 'v1',
    kind: 'Status',
    status: 'Success',
    details: { name, group: 'batch', kind: 'jobs' },
  });

  const find = <T>(map: Map<string, T>, ns: string, name: string, resource: string): T => {
    const found = map.get(objectKey(ns, name));
    if (!found) throw new ApiFailure(404, 'NotFound', `${resource} "${name}" not found`);
    return found;
  };

  function route(
    method: string,
    path: string,
    query: URLSearchParams,
    contentType: string | undefined,
    body: unknown,
  ): Json {
    const dep = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments\/([^/]+)(\/scale)?$/.exec(path);
    if (dep) {
      const [, ns, name, scale] = dep as unknown as [string, string, string, string | undefined];
      const d = find(deployments, ns, name, 'deployments.apps');
      if (method === 'GET') return scale ? scaleJson(ns, name, d) : deploymentJson(ns, name, d);
      if (method === 'PATCH' && scale) {
        const replicas = (applyPatch(scaleJson(ns, name, d), contentType, body).spec as Json | undefined)?.replicas;
        if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
          throw new ApiFailure(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value`);
        }
        if (replicas !== d.replicas) resourceVersion++;
        d.replicas = replicas;
        d.readyReplicas = Math.min(d.readyReplicas, replicas);
        return scaleJson(ns, name, d);
      }
    }
    const jobList = /^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs$/.exec(path);
    if (jobList && method === 'POST') {
      const ns = jobList[1]!;
      const meta = isObj(body) && isObj(body.metadata) ? body.metadata : {};
      const name = typeof meta.name === 'string' ? meta.name : '';
      const podSpec =
        isObj(body) && isObj(body.spec) && isObj(body.spec.template) ? body.spec.template.spec : undefined;
      const containers = isObj(podSpec) && Array.isArray(podSpec.containers) ? podSpec.containers : [];
      if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) {
        throw new ApiFailure(422, 'Invalid', `Job.batch "${name}" is invalid: metadata.name: Invalid value`);
      }
      if (containers.length === 0 || !containers.every((c) => isObj(c) && typeof c.image === 'string' && c.image)) {
        throw new ApiFailure(
          422,
          'Invalid',
          `Job.batch "${name}" is invalid: spec.template.spec.containers: Required value`,
        );
      }
      if (!isObj(podSpec) || !['Never', 'OnFailure'].includes(String(podSpec.restartPolicy))) {
        throw new ApiFailure(
          422,
          'Invalid',
          `Job.batch "${name}" is invalid: spec.template.spec.restartPolicy: Unsupported value`,
        );
      }
      if (jobs.has(objectKey(ns, name)))
        throw new ApiFailure(409, 'AlreadyExists', `jobs.batch "${name}" already exists`);
      const j: JobState = { body: body as Json, status: {} };
      jobs.set(objectKey(ns, name), j);
      resourceVersion++;
      return jobJson(ns, name, j);
    }
    const job = /^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs\/([^/]+)$/.exec(path);
    if (job) {
      const [, ns, name] = job as unknown as [string, string, string];
      const j = find(jobs, ns, name, 'jobs.batch');
      if (method === 'GET') return jobJson(ns, name, j);
      if (method === 'DELETE') {
        jobs.delete(objectKey(ns, name));
        // The garbage collector's part: dependents go unless orphaned.
        if (query.get('propagationPolicy') !== 'Orphan') {
          for (const [key, p] of pods) {
            if (key.startsWith(`${ns}/`) && p.labels['job-name'] === name) {
              pods.delete(key);
              endFollowers(key);
            }
          }
        }
        resourceVersion++;
        return statusOk(name);
      }
    }
    const list = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(path);
    if (list && method === 'GET') {
      const ns = list[1]!;
      const items = [...pods]
        .filter(([key, p]) => key.startsWith(`${ns}/`) && selectorMatches(query.get('labelSelector'), p.labels))
        .map(([key, p]) => podJson(ns, key.slice(ns.length + 1), p));
      return { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(resourceVersion) }, items };
    }
    const pod = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path);
    if (pod) {
      const [, ns, name] = pod as unknown as [string, string, string];
      const p = find(pods, ns, name, 'pods');
      if (method === 'GET') return podJson(ns, name, p);
      if (method === 'PATCH') {
        const meta = applyPatch(podJson(ns, name, p), contentType, body).metadata;
        const annotations = isObj(meta) && isObj(meta.annotations) ? meta.annotations : {};
        for (const [k, v] of Object.entries(annotations)) {
          const cost = k === 'controller.kubernetes.io/pod-deletion-cost' ? Number(v) : 0;
          const badCost = !/^(0|-?[1-9]\d*)$/.test(String(v)) || cost < -(2 ** 31) || cost > 2 ** 31 - 1;
          if (typeof v !== 'string' || (k === 'controller.kubernetes.io/pod-deletion-cost' && badCost)) {
            throw new ApiFailure(422, 'Invalid', `Pod "${name}" is invalid: metadata.annotations[${k}]: Invalid value`);
          }
        }
        p.annotations = annotations as Record<string, string>;
        resourceVersion++;
        return podJson(ns, name, p);
      }
    }
    if (dep || pod || job || jobList)
      throw new ApiFailure(405, 'MethodNotAllowed', `the server does not allow this method on ${path}`);
    throw new ApiFailure(404, 'NotFound', 'the server could not find the requested resource');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const method = req.method ?? 'GET';
    const contentType = req.headers['content-type']?.split(';')[0]?.trim();
    const entry: LoggedRequest = {
      method,
      path: url.pathname,
      query: url.searchParams,
      contentType,
      body: undefined,
      status: 0,
    };
    requests.push(entry);
    let status = 200;
    let payload: Json;
    try {
      entry.body = await readBody(req);
      const fault = faults.find((f) => (f.method ?? method) === method && (f.path?.test(url.pathname) ?? true));
      if (fault) {
        if (fault.times !== undefined && --fault.times <= 0) faults.splice(faults.indexOf(fault), 1);
        if (fault.status === 'hang') return;
        throw new ApiFailure(fault.status, 'InjectedFault', `injected ${fault.status}`);
      }
      if (req.headers.authorization !== `Bearer ${opts.token}`)
        throw new ApiFailure(401, 'Unauthorized', 'Unauthorized');
      const podLog = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/log$/.exec(url.pathname);
      if (podLog && method === 'GET') {
        const key = objectKey(podLog[1]!, podLog[2]!);
        const p = find(pods, podLog[1]!, podLog[2]!, 'pods');
        entry.status = 200;
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write(p.log ?? '');
        const running = !['Succeeded', 'Failed'].includes(String(p.status?.phase));
        if (url.searchParams.get('follow') === 'true' && running) {
          const set = followers.get(key) ?? new Set();
          followers.set(key, set.add(res));
          res.on('close', () => set.delete(res));
        } else res.end();
        return;
      }
      payload = route(method, url.pathname, url.searchParams, contentType, entry.body);
    } catch (err) {
      const f = err instanceof ApiFailure ? err : new ApiFailure(500, 'InternalError', String(err));
      status = f.code;
      payload = {
        apiVersion: 'v1',
        kind: 'Status',
        status: 'Failure',
        message: f.message,
        reason: f.reason,
        code: f.code,
      };
    }
    entry.status = status;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
  }

  const listener = (req: IncomingMessage, res: ServerResponse): void => void handle(req, res);
  const server: Server = opts.tls ? createHttpsServer(opts.tls, listener) : createHttpServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    deployments,
    pods,
    jobs,
    requests,
    addDeployment(ns, name, state) {
      const d = { replicas: 1, readyReplicas: 0, ...state };
      deployments.set(objectKey(ns, name), d);
      return d;
    },
    addPod(ns, name, labels, annotations = {}) {
      const p = { labels, annotations };
      pods.set(objectKey(ns, name), p);
      return p;
    },
    startJobPod(ns, job, pod, container) {
      const p: PodState = {
        labels: { 'job-name': job, 'batch.kubernetes.io/job-name': job },
        annotations: {},
        status: { phase: 'Running', containerStatuses: [{ name: container, state: { running: {} } }] },
        log: '',
      };
      pods.set(objectKey(ns, pod), p);
      find(jobs, ns, job, 'jobs.batch').status = { active: 1 };
      resourceVersion++;
      return p;
    },
    appendLog(ns, pod, text) {
      const p = find(pods, ns, pod, 'pods');
      p.log = (p.log ?? '') + text;
      for (const res of followers.get(objectKey(ns, pod)) ?? []) res.write(text);
    },
    endJobPod(ns, job, pod, container, exitCode) {
      const p = find(pods, ns, pod, 'pods');
      p.status = {
        phase: exitCode === 0 ? 'Succeeded' : 'Failed',
        containerStatuses: [{ name: container, state: { terminated: { exitCode } } }],
      };
      endFollowers(objectKey(ns, pod));
      find(jobs, ns, job, 'jobs.batch').status =
        exitCode === 0
          ? { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] }
          : {
              failed: 1,
              conditions: [
                {
                  type: 'Failed',
                  status: 'True',
                  reason: 'BackoffLimitExceeded',
                  message: 'Job has reached the specified backoff limit',
                },
              ],
            };
      resourceVersion++;
    },
    setJobStatus(ns, job, status) {
      find(jobs, ns, job, 'jobs.batch').status = status;
      resourceVersion++;
    },
    fail: (fault) => void faults.push(fault),
    reset() {
      for (const key of [...followers.keys()]) endFollowers(key);
      jobs.clear();
      for (const c of [deployments, pods]) c.clear();
      requests.length = 0;
      faults.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TestCa {
  /** PEM of the CA that signed `cert` (what a kubeconfig's certificate-authority or ca.crt holds). */
  caCert: string;
  caFile: string;
  cert: string;
  key: string;
}

/** A throw-away CA and a server certificate for 127.0.0.1 and localhost, made by the openssl CLI in `dir`. */
export function makeTestCa(dir: string): TestCa {
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    openssl('version');
  } catch (err) {
    throw new Error('the openssl CLI is needed to make the test CA (apt-get install openssl)', { cause: err });
  }
  const subj = (cn: string): string[] => ['-subj', `/CN=${cn}`];
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '1',
    ...subj('stand-in-ca'),
  );
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', ...subj('127.0.0.1'));
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    'server.ext',
    '-out',
    'server.crt',
  );
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return { caCert: read('ca.crt'), caFile: join(dir, 'ca.crt'), cert: read('server.crt'), key: read('server.key') };
}

/**
 * Lays out token, ca.crt and namespace where `KubeConfig.loadFromCluster(prefix)` reads them
 * (`${prefix}/var/run/secrets/kubernetes.io/serviceaccount/…`); returns the prefix.
 */
export function writeServiceAccount(prefix: string, sa: { token: string; caCert: string; namespace: string }): string {
  const dir = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'token'), sa.token);
  writeFileSync(join(dir, 'ca.crt'), sa.caCert);
  writeFileSync(join(dir, 'namespace'), sa.namespace);
  return prefix;
}

export interface KubeconfigContext {
  name: string;
  server: string;
  token: string;
  /** certificate-authority as written: a relative path is read from the kubeconfig's folder. */
  caFile?: string;
  insecureSkipTlsVerify?: boolean;
}

/** A kubeconfig file (JSON, which is YAML) with one cluster and user per context. */
export function writeKubeconfig(file: string, contexts: KubeconfigContext[], current: string): string {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': current,
    clusters: contexts.map((c) => ({
      name: c.name,
      cluster: {
        server: c.server,
        ...(c.caFile ? { 'certificate-authority': c.caFile } : {}),
        ...(c.insecureSkipTlsVerify ? { 'insecure-skip-tls-verify': true } : {}),
      },
    })),
    users: contexts.map((c) => ({ name: c.name, user: { token: c.token } })),
    contexts: contexts.map((c) => ({ name: c.name, context: { cluster: c.name, user: c.name } })),
  };
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}
