/**
 * A pool whose ranks run as Kubernetes Jobs, end to end on a real Redis: the producer's API, a leading
 * scheduler and a real gpu-worker configured with runner kind `kubernetes`, talking through the real
 * @kubernetes/client-node to the API stand-in (test/helpers/kube-api-server.ts) over HTTPS. The test is
 * the cluster: it plays the Job controller and the rank's program, which pushes its own output to the
 * checkpoint URI in its environment (the pod cannot see the worker's directory). The round's reduce
 * (test/fixtures/training-reduce-max.mjs) runs on the worker, from storage, as with the local runner.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { CONTAINER } from '../../gpu-worker/training/runners/kubernetes-job-spec.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { REDIS_URL, startFleet, type TestFleet } from '../helpers/fleet.ts';
import { makeTestCa, startKubeApiServer, writeKubeconfig, type KubeApiServer } from '../helpers/kube-api-server.ts';
import { trainingApi } from '../helpers/training-api.ts';
import { until } from '../helpers/until.ts';

const reduceMax = resolve(import.meta.dirname, '../fixtures/training-reduce-max.mjs');
const node = process.execPath;
const TOKEN = 'gpu-worker-token';
const NS = 'training';

interface ApiJob {
  id: string;
  status: string;
  error: string | null;
  models: { round: number; uri: string }[];
  ranks: { round: number; rank: number; status: string; exit_code?: number; metrics: Record<string, number> }[];
}

let dir: string;
let server: KubeApiServer;
let fleet: TestFleet;
let closeScheduler: () => Promise<void>;

beforeAll(async () => {
  process.env.REDIS_URL ??= REDIS_URL;
  dir = await mkdtemp(join(tmpdir(), 'interfleet-kube-runner-'));
  const ca = makeTestCa(dir);
  server = await startKubeApiServer({ token: TOKEN, tls: { cert: ca.cert, key: ca.key } });
  const kubeconfig = writeKubeconfig(
    join(dir, 'kube', 'config'),
    [{ name: 'oke', server: server.url, token: TOKEN, caFile: '../ca.crt' }],
    'oke',
  );
  await writeFile(join(dir, 'data.txt'), 'one\ntwo\n');
  const runner = JSON.stringify({
    kind: 'kubernetes',
    kubernetes: { namespace: NS, image: 'ocir.io/acme/trainer:1', kubeconfig, pollIntervalMs: 100 },
  });
  const yaml = `
scheduler: { renewEveryMs: 200, balanceEveryMs: 200 }
worker: { heartbeatMs: 100 }
pools:
  - name: p
    backend: echo
    lanes: { realtime: { concurrency: 1 }, bulk: { concurrency: 0 }, training: { concurrency: 1, programs: ['/opt/train', '${node}'], runner: ${runner} } }
`;
  fleet = await startFleet({ yaml, workers: 1 });
  const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  closeScheduler = () => scheduler.close();
}, 30_000);

afterAll(async () => {
  await closeScheduler?.();
  await fleet?.stop();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const { post, get, ended } = trainingApi<ApiJob>(() => fleet.producer.url);

/** Plays the cluster for the next Job: its program writes w to its checkpoint URI, logs `loss`, exits `exitCode`. */
async function playJob(w: number, loss: number, exitCode: number): Promise<Record<string, string>> {
  const name = await until(async () => [...server.jobs.keys()].map((k) => k.split('/')[1]!)[0], 30_000);
  const container = server.jobs.get(`${NS}/${name}`)!.body.spec as {
    template: { spec: { containers: { env: { name: string; value: string }[] }[] } };
  };
  const env = Object.fromEntries(container.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
  const out = fileURLToPath(env.INTERFLEET_CHECKPOINT_URI!);
  await mkdir(out, { recursive: true });
  const f32 = Buffer.alloc(4);
  f32.writeFloatLE(w, 0);
  await writeFile(join(out, 'w.f32'), f32);
  const pod = `${name}-pod`;
  server.startJobPod(NS, name, pod, CONTAINER);
  server.appendLog(NS, pod, `starting\n{"metric":"loss","value":${loss},"step":1}\n`);
  server.endJobPod(NS, name, pod, CONTAINER, exitCode);
  return env;
}

describe('the kubernetes runner in a pool (rounds mode)', () => {
  it('runs the rank as a Job: its log metrics reach the rank record, its pushed output the reduce', async () => {
    const { status, json } = await post({
      pool: 'p',
      command: '/opt/train',
      args: ['--fast'],
      data_uri: pathToFileURL(join(dir, 'data.txt')).href,
      shard: 'none',
      mode: 'rounds',
      rounds: 1,
      workers: 1,
      checkpoint_uri: `${pathToFileURL(join(dir, 'run')).href}/`,
      params: {},
      reduce: { command: node, args: [reduceMax] },
    });
    expect(status, JSON.stringify(json)).toBe(200);
    const env = await playJob(7, 0.25, 0);
    expect(env).toMatchObject({ RANK: '0', WORLD_SIZE: '1', INTERFLEET_SHARD: 'none' });
    const job = await ended(json.id as string, 30_000);
    expect(job.error).toBeNull();
    expect(job.status).toBe('succeeded');
    expect(job.ranks).toHaveLength(1);
    expect(job.ranks[0]!.metrics).toEqual({ loss: 0.25 });
    const model = fileURLToPath(job.models[0]!.uri);
    expect((await readFile(join(model, 'w.f32'))).readFloatLE(0)).toBe(7);
  }, 60_000);

  it('fails a gang-mode job at once: rank 0 would need its pod address before its peers start', async () => {
    const { status, json } = await post({
      pool: 'p',
      command: '/opt/train',
      args: [],
      data_uri: pathToFileURL(join(dir, 'data.txt')).href,
      shard: 'none',
      workers: 1,
      checkpoint_uri: `${pathToFileURL(join(dir, 'gang')).href}/`,
      params: {},
    });
    expect(status, JSON.stringify(json)).toBe(200);
    const job = await until(async () => {
      const j = await get(json.id as string);
      return j.status === 'failed' ? j : undefined;
    }, 30_000);
    expect(job.error).toMatch(/this pool's kubernetes runner does not run gang mode/);
  }, 60_000);
});
