/**
 * The training lane's kubernetes runner through the real @kubernetes/client-node against the local API
 * stand-in (test/helpers/kube-api-server.ts) over HTTPS: the Job it creates, its pod's log followed for
 * metric lines, exit codes and Job failures mapped, a stop deleting the Job, API errors typed. The test
 * plays the Job controller (startJobPod, appendLog, endJobPod).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Job } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, type KubernetesRunnerConfig } from '../../common/config.ts';
import type { MetricLine, RankJob } from '../../common/contracts/training.ts';
import { failureReason, type RunResult } from '../../gpu-worker/training/run-command.ts';
import { CONTAINER } from '../../gpu-worker/training/runners/kubernetes-job-spec.ts';
import { KubeRunnerError } from '../../gpu-worker/training/runners/kubernetes-job.ts';
import { localRunner } from '../../gpu-worker/training/runners/local.ts';
import { createRankRunner } from '../../gpu-worker/training/runners/registry.ts';
import type { RankRunner } from '../../gpu-worker/training/runners/runner.ts';
import {
  makeTestCa,
  objectKey,
  startKubeApiServer,
  writeKubeconfig,
  type KubeApiServer,
} from '../helpers/kube-api-server.ts';
import { until } from '../helpers/until.ts';
import { forbiddenInRank, workerSecrets } from '../helpers/worker-secrets.ts';

/** The worker's own environment: none of it may reach a rank's pod. */
const workerEnv = { PATH: '/worker/bin', LANG: 'C.UTF-8', ...workerSecrets };

const TOKEN = 'gpu-worker-token';
const NS = 'training';
const JOB_ID = 'train_0123456789abcdef0123';
const NAME = `train-0123456789abcdef0123-r2-k1-abc123`;
const POD = `${NAME}-x7k2p`;

let dir: string;
let server: KubeApiServer;
let kubeconfig: string;

const rank: RankJob = {
  jobId: JOB_ID,
  pool: 'default',
  round: 2,
  rank: 1,
  worldSize: 2,
  mode: 'rounds',
  command: '/opt/train',
  args: ['--epochs', '3'],
  dataUri: 'oci://bucket/data/',
  data: { uris: ['oci://bucket/data/a.jsonl', 'oci://bucket/data/b.jsonl'], shard: 'lines' },
  checkpointUri: 'oci://bucket/runs/x/round-2/rank-1/',
  previousCheckpointUri: 'oci://bucket/runs/x/round-1/rank-1/',
  initUri: 'oci://bucket/runs/x/round-1/model/',
  params: { lr: 0.1 },
  restart: 0,
};

/** The pool's config through the real parser: the defaults are the ones in common/config.ts. */
function runnerConfig(over: Record<string, unknown> = {}): KubernetesRunnerConfig {
  const yaml = JSON.stringify({
    pools: [
      {
        name: 'default',
        lanes: {
          training: {
            runner: {
              kind: 'kubernetes',
              kubernetes: { namespace: NS, image: 'ocir.io/acme/trainer:1', kubeconfig, pollIntervalMs: 100, ...over },
            },
          },
        },
      },
    ],
  });
  const runner = parseConfig({}, yaml).pools[0]!.lanes.training.runner;
  return runner.kubernetes!;
}

function makeRunner(over: Record<string, unknown> = {}): RankRunner {
  const runner = createRankRunner(
    { kind: 'kubernetes', kubernetes: runnerConfig(over) },
    { logger: pino({ level: 'silent' }), env: {} },
  );
  expect(runner.kind).toBe('kubernetes');
  return runner;
}

/** Starts a run of `rank` with a fixed Job name; resolves its result and collects its metrics. */
function start(runner: RankRunner, extra: { deadlineAt?: number; signal?: AbortSignal } = {}) {
  const metrics: MetricLine[] = [];
  const result = runner.run({
    command: rank.command,
    args: rank.args,
    env: runner.env(rank, {
      worker: workerEnv,
      declared: { HF_HOME: '/models/hf' },
      dirs: { work: '/w', data: '/w/data', init: '/w/init', output: '/w/output' },
    }),
    signal: extra.signal ?? new AbortController().signal,
    onMetric: (m) => void metrics.push(m),
    killAfterMs: 5000,
    rank,
    ...(extra.deadlineAt !== undefined && { deadlineAt: extra.deadlineAt }),
  });
  return { metrics, result };
}

const created = () => until(async () => [...server.jobs.keys()][0]?.split('/')[1]);
const createdJob = (name: string): V1Job => server.jobs.get(objectKey(NS, name))!.body;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kube-runner-'));
  const ca = makeTestCa(dir);
  server = await startKubeApiServer({ token: TOKEN, tls: { cert: ca.cert, key: ca.key } });
  kubeconfig = writeKubeconfig(
    join(dir, 'kube', 'config'),
    [{ name: 'oke', server: server.url, token: TOKEN, caFile: '../ca.crt' }],
    'oke',
  );
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => server.reset());

describe('kubernetes runner', () => {
  it('creates the Job with the rank spec, follows its log for metrics and maps exit 0', async () => {
    const runner = makeRunner({
      gpus: 2,
      memory: '16Gi',
      nodeSelector: { 'node.kubernetes.io/instance-type': 'BM.GPU.H100.8' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      serviceAccountName: 'trainer',
    });
    const deadlineAt = Date.now() + 90_500;
    const { metrics, result } = start(runner, { deadlineAt });
    const name = await created();
    expect(name).toMatch(/^train-0123456789abcdef0123-r2-k1-[0-9a-f]{6}$/);
    const job = createdJob(name);
    const labels = {
      'app.kubernetes.io/managed-by': 'interfleet',
      'interfleet/training-job': JOB_ID,
      'interfleet/round': '2',
      'interfleet/rank': '1',
      'interfleet/restart': '0',
    };
    expect(job.metadata).toMatchObject({ name, namespace: NS, labels });
    expect(job.spec).toMatchObject({ backoffLimit: 0, ttlSecondsAfterFinished: 3600 });
    expect(job.spec!.activeDeadlineSeconds).toBeGreaterThanOrEqual(90);
    expect(job.spec!.activeDeadlineSeconds).toBeLessThanOrEqual(91);
    const pod = job.spec!.template.spec!;
    expect(pod).toMatchObject({
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 5,
      serviceAccountName: 'trainer',
      nodeSelector: { 'node.kubernetes.io/instance-type': 'BM.GPU.H100.8' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      // No API token in the pod, no variable per Service of the namespace.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
    });
    expect(job.spec!.template.metadata!.labels).toEqual(labels);
    const c = pod.containers[0]!;
    expect(c).toMatchObject({ name: CONTAINER, image: 'ocir.io/acme/trainer:1', command: ['/opt/train'] });
    expect(c.args).toEqual(['--epochs', '3']);
    expect(c.resources).toEqual({
      requests: { memory: '16Gi', 'nvidia.com/gpu': '2' },
      limits: { 'nvidia.com/gpu': '2' },
    });
    const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value]));
    // The URIs, not the worker's directories or variables.
    expect(env).toMatchObject({
      RANK: '1',
      WORLD_SIZE: '2',
      INTERFLEET_ROUND: '2',
      INTERFLEET_DATA_URI: 'oci://bucket/data/',
      INTERFLEET_DATA_URIS: '["oci://bucket/data/a.jsonl","oci://bucket/data/b.jsonl"]',
      INTERFLEET_SHARD: 'lines',
      INTERFLEET_INIT_URI: 'oci://bucket/runs/x/round-1/model/',
      INTERFLEET_CHECKPOINT_URI: 'oci://bucket/runs/x/round-2/rank-1/',
      INTERFLEET_PARAMS: '{"lr":0.1}',
    });
    for (const absent of [
      'PATH',
      'LANG',
      'HOME',
      'TMPDIR',
      'INTERFLEET_DATA_DIR',
      'INTERFLEET_OUTPUT_DIR',
      ...forbiddenInRank,
    ]) {
      expect(env).not.toHaveProperty(absent);
    }
    // Nothing but the rank's own names and the pool's declared one.
    const rankNames = /^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|TORCHELASTIC_RESTART_COUNT|INTERFLEET_[A-Z_]+)$/;
    expect(Object.keys(env).filter((n) => !rankNames.test(n))).toEqual(['HF_HOME']);
    expect(env.HF_HOME).toBe('/models/hf');
    for (const value of Object.values(env)) expect(Object.values(workerSecrets)).not.toContain(value);

    server.startJobPod(NS, name, POD, CONTAINER);
    server.appendLog(NS, POD, 'loading shard\n{"metric":"loss","value":0.9,"step":1}\n');
    await until(async () => (metrics.length === 1 ? true : undefined)); // streamed while it runs
    server.appendLog(NS, POD, '{"metric":"loss","val');
    server.appendLog(NS, POD, 'ue":0.4,"step":2}\n');
    server.endJobPod(NS, name, POD, CONTAINER, 0);
    const r = await result;
    expect(r).toMatchObject({ exitCode: 0, signal: null, spawnError: null });
    expect(metrics.map((m) => m.value)).toEqual([0.9, 0.4]);
    const logReads = server.requests.filter((q) => q.path.endsWith(`/pods/${POD}/log`));
    expect(logReads).toHaveLength(1);
    expect(logReads[0]!.query.get('follow')).toBe('true');
    expect(server.jobs.has(objectKey(NS, name))).toBe(true); // left to its TTL
  });

  it('maps a non-zero exit to its code, with the end of the log as the reason', async () => {
    const { result } = start(makeRunner());
    const name = await created();
    // No service account configured: the namespace's default one, and still no token.
    const pod = createdJob(name).spec!.template.spec!;
    expect(pod.serviceAccountName).toBeUndefined();
    expect(pod.automountServiceAccountToken).toBe(false);
    server.startJobPod(NS, name, POD, CONTAINER);
    server.appendLog(NS, POD, '{"metric":"loss","value":1}\nTraceback: loss is NaN\n');
    server.endJobPod(NS, name, POD, CONTAINER, 3);
    const r = await result;
    expect(r.exitCode).toBe(3);
    expect(failureReason(r)).toBe('exit code 3; log: Traceback: loss is NaN');
  });

  it('mounts the service account token only when configured to', async () => {
    const { result } = start(makeRunner({ serviceAccountName: 'trainer', automountServiceAccountToken: true }));
    const name = await created();
    expect(createdJob(name).spec!.template.spec).toMatchObject({
      serviceAccountName: 'trainer',
      automountServiceAccountToken: true,
      enableServiceLinks: false,
    });
    server.startJobPod(NS, name, POD, CONTAINER);
    server.endJobPod(NS, name, POD, CONTAINER, 0);
    expect((await result).exitCode).toBe(0);
  });

  it('maps a Job failed without an exit code (deadline) to its reason', async () => {
    const { result } = start(makeRunner(), { deadlineAt: Date.now() - 1000 });
    const name = await created();
    expect(createdJob(name).spec!.activeDeadlineSeconds).toBe(1);
    server.setJobStatus(NS, name, {
      failed: 1,
      conditions: [
        {
          type: 'Failed',
          status: 'True',
          reason: 'DeadlineExceeded',
          message: 'Job was active longer than specified deadline',
        },
      ],
    });
    const r = await result;
    expect(r).toMatchObject({ exitCode: null, spawnError: null });
    expect(failureReason(r)).toBe('Job failed: DeadlineExceeded: Job was active longer than specified deadline');
  });

  it('stops following a log still open when its Job has ended (the abort does not escape)', async () => {
    const { metrics, result } = start(makeRunner({ requestTimeoutMs: 200 }));
    const name = await created();
    server.startJobPod(NS, name, POD, CONTAINER); // the pod stays Running: its log stays open
    server.appendLog(NS, POD, '{"metric":"loss","value":3}\n');
    await until(async () => (metrics.length === 1 ? true : undefined));
    server.setJobStatus(NS, name, {
      failed: 1,
      conditions: [{ type: 'Failed', status: 'True', reason: 'DeadlineExceeded' }],
    });
    expect(failureReason(await result)).toBe('Job failed: DeadlineExceeded');
    await new Promise((r) => setTimeout(r, 50)); // an unhandled stream error would surface here
  });

  it('runs on without metrics when the log cannot be read', async () => {
    server.fail({ method: 'GET', path: /\/log$/, status: 403 });
    const { metrics, result } = start(makeRunner());
    const name = await created();
    server.startJobPod(NS, name, POD, CONTAINER);
    server.appendLog(NS, POD, '{"metric":"loss","value":3}\n');
    await until(async () => (server.requests.some((q) => q.path.endsWith('/log')) ? true : undefined));
    server.endJobPod(NS, name, POD, CONTAINER, 0);
    expect((await result).exitCode).toBe(0);
    expect(metrics).toEqual([]);
  });

  it('deletes the Job (Background) when stopped, and its pod goes with it', async () => {
    const stop = new AbortController();
    const { metrics, result } = start(makeRunner(), { signal: stop.signal });
    const name = await created();
    server.startJobPod(NS, name, POD, CONTAINER);
    server.appendLog(NS, POD, '{"metric":"loss","value":2}\n');
    await until(async () => (metrics.length === 1 ? true : undefined));
    stop.abort('gang_ended');
    const r = await result;
    expect(r).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
    const deletes = server.requests.filter((q) => q.method === 'DELETE');
    expect(deletes.map((q) => [q.path, q.query.get('propagationPolicy')])).toEqual([
      [`/apis/batch/v1/namespaces/${NS}/jobs/${name}`, 'Background'],
    ]);
    expect(server.jobs.size).toBe(0);
    expect(server.pods.size).toBe(0);
  });

  it('fails a pod that cannot pull its image as a command that cannot start, and deletes its Job', async () => {
    const { result } = start(makeRunner());
    const name = await created();
    const pod = server.startJobPod(NS, name, POD, CONTAINER);
    pod.status = {
      phase: 'Pending',
      containerStatuses: [
        { name: CONTAINER, state: { waiting: { reason: 'ImagePullBackOff', message: 'no such tag' } } },
      ],
    };
    const r = await result;
    expect(r.spawnError).toBeInstanceOf(KubeRunnerError);
    expect(r.spawnError).toMatchObject({ code: 'cannot_start', retryable: false });
    expect(failureReason(r)).toMatch(/^could not start: pod of Job .* cannot start: ImagePullBackOff: no such tag$/);
    expect(server.jobs.size).toBe(0);
  });

  it.each([
    {
      status: 403,
      code: 'forbidden',
      retryable: false,
      message: /forbidden|Role needs create, get and delete on jobs/,
    },
    { status: 404, code: 'not_found', retryable: false, message: /create jobs training\/.* \(HTTP 404\)/ },
    { status: 422, code: 'invalid', retryable: false, message: /HTTP 422/ },
  ])('types a refused create ($status) as one no retry helps', async ({ status, code, retryable, message }) => {
    server.fail({ method: 'POST', path: /\/jobs$/, status });
    const r = await start(makeRunner()).result;
    expect(r.spawnError).toBeInstanceOf(KubeRunnerError);
    expect(r.spawnError).toMatchObject({ code, retryable, status });
    expect(r.spawnError!.message).toMatch(message);
  });

  it('fails a create the API could not serve (503) as retryable: no spawn error', async () => {
    server.fail({ method: 'POST', path: /\/jobs$/, status: 503 });
    const r: RunResult = await start(makeRunner()).result;
    expect(r).toMatchObject({ exitCode: null, spawnError: null });
    expect(failureReason(r)).toMatch(/^create jobs training\/.* \(HTTP 503\): injected 503$/);
  });

  it('rides out a failed read of its Job, and gives up (deleting it) after maxPollFailures', async () => {
    server.fail({ method: 'GET', path: /\/jobs\//, status: 500, times: 1 });
    const first = start(makeRunner());
    const name = await created();
    server.startJobPod(NS, name, POD, CONTAINER);
    server.endJobPod(NS, name, POD, CONTAINER, 0);
    expect((await first.result).exitCode).toBe(0);
    expect(server.requests.some((q) => q.status === 500)).toBe(true);

    server.reset();
    server.fail({ method: 'GET', path: /\/jobs\//, status: 503 });
    const r = await start(makeRunner({ maxPollFailures: 2 })).result;
    expect(r).toMatchObject({ exitCode: null, spawnError: null });
    expect(failureReason(r)).toMatch(/^lost track of Job .*: get jobs .* \(HTTP 503\)/);
    expect(server.jobs.size).toBe(0); // deleted: nothing runs on unwatched
  });
});

describe('runner config and registry', () => {
  it('is local by default', () => {
    const cfg = parseConfig({}, JSON.stringify({ pools: [{ name: 'p' }] })).pools[0]!.lanes.training.runner;
    expect(cfg).toEqual({ kind: 'local' });
    expect(createRankRunner(cfg, { logger: pino({ level: 'silent' }) })).toBe(localRunner);
  });

  it.each([
    [{ kind: 'kubernetes' }, /pools\.0\.lanes\.training\.runner\.kubernetes: runner kind 'kubernetes' needs/],
    [{ kind: 'kubernetes', kubernetes: { image: '' } }, /runner\.kubernetes\.image: image must not be empty/],
    [
      { kind: 'kubernetes', kubernetes: { image: 'i', namespace: 'Bad_NS' } },
      /runner\.kubernetes\.namespace: must be a DNS-1123 label/,
    ],
    [{ kind: 'kubernetes', kubernetes: { image: 'i', gpus: -1 } }, /runner\.kubernetes\.gpus/],
    [{ kind: 'ssh' }, /runner\.kind/],
  ])('refuses %j with its path', (runner, message) => {
    const yaml = JSON.stringify({ pools: [{ name: 'p', lanes: { training: { runner } } }] });
    expect(() => parseConfig({}, yaml)).toThrow(ConfigError);
    expect(() => parseConfig({}, yaml)).toThrow(message);
  });
});
