/**
 * The results of ended training jobs on a real Redis, file:// storage and a
 * real local HTTP receiver: the leader's finisher adds one results job per
 * ended job; the worker's results job (run here as the training lane runs
 * it) checksums and evaluates the final model, writes the manifest
 * create-only and registers the model, and a second run changes nothing;
 * webhook deliveries that keep failing (HTTP 500, nobody listening) are
 * retried up to maxAttempts, recorded in the job as failed, never dropped;
 * a cancelled job gets a manifest without an artifact.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingSpec } from '../../common/contracts/training.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { finishJobId, queueName } from '../../common/topology.ts';
import { digestDir, modelChecksum } from '../../common/training/model-checksum.ts';
import { TrainedModelRegistry } from '../../common/training/trained-model-registry.ts';
import { TrainingResultsStore } from '../../common/training/training-results.ts';
import { newTrainingJobId, TrainingStore } from '../../common/training/training-state.ts';
import { verifyWebhook } from '../../common/training/webhook-signature.ts';
import { featurize, newModel, writeModelDir } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { runFinishJob } from '../../gpu-worker/training/finish-job.ts';
import { createSchedulerMetrics } from '../../scheduler/metrics.ts';
import { TrainingFinisher } from '../../scheduler/training-finisher.ts';
import { deleteKeys, REDIS_URL } from '../helpers/fleet.ts';

const prefix = `t-results-${randomUUID().slice(0, 8)}`;
const pool = 'p';
const secret = 'results-test-secret-0123456789';
let redis: Redis;
let dir: string;
let server: Server;
let serverUrl: string;
const received: Array<{ body: string; signature: string }> = [];

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  dir = await mkdtemp(join(tmpdir(), 'interfleet-results-'));
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      received.push({ body, signature: String(req.headers['x-interfleet-signature']) });
      res.writeHead(500).end('no');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  serverUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
});

afterAll(async () => {
  server?.close();
  await new Queue(queueName('train', pool), { connection: redis, prefix }).obliterate({ force: true });
  await deleteKeys(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

const spec = (over: Partial<TrainingSpec>): TrainingSpec => ({
  id: newTrainingJobId(Date.now()),
  pool,
  tenant: 'default',
  command: 'builtin:text-classifier',
  args: [],
  dataUri: pathToFileURL(join(dir, 'data.tsv')).href,
  shard: 'lines',
  mode: 'rounds',
  initUri: null,
  checkpointPrefix: `${pathToFileURL(join(dir, randomUUID())).href}/`,
  params: {},
  workers: 1,
  rounds: 1,
  priority: 0,
  attempts: 1,
  createdAt: Date.now(),
  ...over,
});

/** A two-class model where "good" means positive and "bad" negative. */
async function writeTinyModel(uriPrefix: string): Promise<void> {
  const model = newModel({ features: 1024, ngrams: 1, classes: ['negative', 'positive'] });
  model.weights[1024 + featurize('good', 1024, 1).indices[0]!] = 5;
  model.weights[featurize('bad', 1024, 1).indices[0]!] = 5;
  await writeModelDir(fileURLToPath(uriPrefix), model);
}

function finisher(maxAttempts: number) {
  return new TrainingFinisher({
    redis,
    prefix,
    pools: [{ name: pool }],
    webhook: { secret, maxAttempts, backoffMs: 20, timeoutMs: 2000 },
    metrics: createSchedulerMetrics({}),
    logger: silentLogger(),
    now: Date.now,
  });
}

describe('training results', () => {
  const store = () => new TrainingStore(redis, prefix);
  const results = () => new TrainingResultsStore(redis, prefix);
  const registry = () => new TrainedModelRegistry(redis, prefix);
  const finishDeps = () => ({
    storage: createFileStorage(),
    store: store(),
    results: results(),
    registry: registry(),
    logger: silentLogger(),
    now: Date.now,
  });

  it('writes the manifest once, registers the model, and records a webhook that keeps failing as failed', async () => {
    const evalFile = join(dir, 'eval.tsv');
    await writeFile(evalFile, 'good\tpositive\nbad\tnegative\ngood\tnegative\nmeh\tunknown\n\n');
    const s = spec({ evalUri: pathToFileURL(evalFile).href, modelName: 'tiny', webhookUrl: serverUrl });
    const st = store();
    await st.create(s);
    // One rank of one round succeeds, its reduce writes the model: the job succeeds.
    expect(await st.admit(pool, s.id, 1, 1, Date.now())).toBe('admitted');
    const base = { worker: 'w', startedAt: Date.now() - 1500, checkpointUri: `${s.checkpointPrefix}round-1/rank-0/` };
    await st.startRank(pool, s.id, 1, 0, { ...base, state: 'running' });
    const metrics = { loss: 0.5, examples: 3 };
    await st.settleRank(
      pool,
      s.id,
      1,
      0,
      { ...base, state: 'succeeded', endedAt: Date.now(), exitCode: 0, metrics },
      Date.now(),
    );
    await writeTinyModel(`${s.checkpointPrefix}round-1/model/`);
    expect(await st.finishReduce(pool, s.id, 1, Date.now())).toBe('gang_succeeded');

    const f = finisher(2);
    await f.begin((await st.get(pool, s.id))!);
    await f.pass();
    const queue = new Queue(queueName('train', pool), { connection: redis, prefix });
    expect((await queue.getJob(finishJobId(s.id)))?.data).toEqual({ jobId: s.id, pool });
    await f.pass(); // a second pass adds nothing more
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 1 });
    await queue.close();

    const manifest = await runFinishJob(finishDeps(), { jobId: s.id, pool }, new AbortController().signal);
    expect(manifest).toMatchObject({
      status: 'succeeded',
      rounds_completed: 1,
      model_name: 'tiny',
      evaluation: {
        examples: 3,
        skipped: 1,
        accuracy: 2 / 3,
        majority_class: 'negative',
        majority_class_accuracy: 2 / 3,
        confusion: { positive: { positive: 1, negative: 0 }, negative: { negative: 1, positive: 1 } },
      },
      evaluation_error: null,
    });
    expect(manifest.per_round).toEqual([
      expect.objectContaining({ round: 1, ranks: 1, ranks_succeeded: 1, metrics, rank_metrics: [metrics] }),
    ]);
    expect(manifest.per_round[0]!.duration_ms).toBeGreaterThanOrEqual(1500);
    const modelDir = fileURLToPath(`${s.checkpointPrefix}round-1/model/`);
    expect(manifest.artifact?.sha256).toBe(modelChecksum(await digestDir(modelDir)));
    expect(JSON.parse(await readFile(fileURLToPath(manifest.manifest_uri), 'utf8'))).toEqual(manifest);
    expect(await registry().get('tiny')).toMatchObject({ sha256: manifest.artifact?.sha256, job_id: s.id });
    // Run again (a retried results job): the same manifest, nothing rewritten.
    expect(await runFinishJob(finishDeps(), { jobId: s.id, pool }, new AbortController().signal)).toEqual(manifest);

    // The webhook: HTTP 500 twice, then recorded as failed and the job leaves the finishing set.
    await f.pass();
    await waitFor(async () => (await results().get(pool, s.id)).webhook?.attempts === 1);
    await new Promise((r) => setTimeout(r, 30));
    await f.pass();
    await waitFor(async () => (await results().get(pool, s.id)).webhook?.status === 'failed');
    expect((await results().get(pool, s.id)).webhook).toMatchObject({
      url: serverUrl,
      status: 'failed',
      attempts: 2,
      last_status_code: 500,
      last_error: 'HTTP 500',
      next_attempt_at: null,
      delivered_at: null,
    });
    await f.pass();
    expect(await results().finishingIds(pool)).toEqual([]);
    expect(received).toHaveLength(2);
    const body = JSON.parse(received[0]!.body) as { job: { id: string; manifest: unknown } };
    expect(body.job).toMatchObject({ id: s.id, manifest });
    expect(verifyWebhook(secret, received[0]!.body, received[0]!.signature, Math.floor(Date.now() / 1000))).toBe(true);
    await f.close();
  });

  it('gives a cancelled job a manifest without an artifact, and records an unreachable webhook as failed', async () => {
    // A port nobody listens on.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const s = spec({ webhookUrl: `http://127.0.0.1:${port}/hook`, modelName: 'never' });
    const st = store();
    await st.create(s);
    await st.cancel(pool, s.id, 'cancelled by request', Date.now());
    const f = finisher(1);
    await f.begin((await st.get(pool, s.id))!);
    const manifest = await runFinishJob(finishDeps(), { jobId: s.id, pool }, new AbortController().signal);
    expect(manifest).toMatchObject({
      status: 'cancelled',
      error: 'cancelled by request',
      rounds_completed: 0,
      artifact: null,
      evaluation: null,
      model_name: null,
      per_round: [],
    });
    await f.pass();
    await waitFor(async () => (await results().get(pool, s.id)).webhook?.status === 'failed');
    const hook = (await results().get(pool, s.id)).webhook!;
    expect(hook).toMatchObject({ attempts: 1, last_status_code: null });
    expect(hook.last_error).toMatch(/fetch failed/);
    expect(await registry().get('never')).toBeUndefined();
    await f.close();
  });
});

async function waitFor(probe: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
