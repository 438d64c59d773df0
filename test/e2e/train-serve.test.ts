/**
 * Train → serve through `npm start`'s launcher as real processes (producer,
 * scheduler, forked gpu-workers) on its embedded defaults: the default pool
 * (embedded backend, autoscaled from one worker, one training slot each).
 * The built-in classifier trains on the UCI sentiment sentences with 3
 * workers for 3 rounds (the autoscaler must make room for the gang); a
 * held-out split the job names is evaluated by a worker; the manifest,
 * checksum, registry, signed completion webhook (a real local HTTP server,
 * failing once) and /metrics are checked; then the model is served by name
 * through /v1/infer and in a batch, and its labels agree with the manifest.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainingManifestSchema, type TrainingManifest } from '../../common/contracts/trained-models.ts';
import { digestDir, modelChecksum } from '../../common/training/model-checksum.ts';
import { hashString } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { createNlp } from '../../gpu-worker/backends/embedded-nlp.ts';
import { createSentimentClassifier } from '../../gpu-worker/backends/embedded-sentiment.ts';
import { SIGNATURE_HEADER, verifyWebhook } from '../../common/training/webhook-signature.ts';
import { apiTrainingJobSchema } from '../../producer/client/training-wire.ts';
import { InterfleetClient } from '../../producer/client/index.ts';
import { buildProgram } from '../../producer/cli/program.ts';
import { deleteKeys, REDIS_URL } from '../helpers/fleet.ts';
import { startLauncher, type LauncherProcess } from '../helpers/launcher-process.ts';
import { until } from '../helpers/until.ts';

const dataDir = fileURLToPath(new URL('../../../shared/data/sentiment-labelled-sentences/', import.meta.url));
const files = ['amazon_cells_labelled.txt', 'imdb_labelled.txt', 'yelp_labelled.txt'];
const secret = 'e2e-webhook-secret-0123456789';

// npm start's defaults (pools, backend, training slots, autoscaling policy); only the passes are quicker
// and the scheduler's metrics port is a free one (tests run side by side).
const config = `
scheduler: { metricsPort: 0 }
autoscaler: { everyMs: 1000 }
training: { webhook: { backoffMs: 200 } }
log: { level: warn }
`;

interface Example {
  text: string;
  label: 'positive' | 'negative';
}

let dir: string;
let launcher: LauncherProcess | undefined;
let url: string;
let hooks: Server;
let hookUrl: string;
const deliveries: Array<{ body: string; signature: string; delivery: string }> = [];
const prefix = `e2e-train-serve-${randomUUID().slice(0, 8)}`;
const train: Example[] = [];
const heldOut: Example[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-train-serve-'));
  // The data as TSV with named labels; one line in ten (by hash) is the held-out split the job names.
  await mkdir(join(dir, 'train'));
  for (const f of files) {
    const lines = (await readFile(join(dataDir, f), 'utf8')).split(/\r?\n/).filter((l) => l.includes('\t'));
    const examples = lines.map((l): Example => {
      const tab = l.lastIndexOf('\t');
      return { text: l.slice(0, tab).trim(), label: l.slice(tab + 1).trim() === '1' ? 'positive' : 'negative' };
    });
    const mine = examples.filter((e) => hashString(e.text) % 10 !== 0);
    heldOut.push(...examples.filter((e) => hashString(e.text) % 10 === 0));
    train.push(...mine);
    await writeFile(join(dir, 'train', f), mine.map((e) => `${e.text}\t${e.label}\n`).join(''));
  }
  await writeFile(join(dir, 'eval.tsv'), heldOut.map((e) => `${e.text}\t${e.label}\n`).join(''));

  // The webhook receiver: the first try is answered 503, so the delivery is retried.
  hooks = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      deliveries.push({
        body,
        signature: String(req.headers[SIGNATURE_HEADER]),
        delivery: String(req.headers['x-interfleet-delivery']),
      });
      res.writeHead(deliveries.length === 1 ? 503 : 204).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(hooks.address() as { port: number }).port}/hooks/training`;

  await writeFile(join(dir, 'config.yaml'), config);
  launcher = await startLauncher({
    INTERFLEET_CONFIG: join(dir, 'config.yaml'),
    INTERFLEET_PREFIX: prefix,
    INTERFLEET_WEBHOOK_SECRET: secret,
    REDIS_URL,
  });
  url = launcher.url;
}, 90_000);

afterAll(async () => {
  await launcher?.kill();
  hooks?.close();
  const redis = new Redis(REDIS_URL);
  await deleteKeys(redis, prefix);
  redis.disconnect();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// Loosely typed bodies: each check below names the fields it reads (the training job is parsed by the SDK's schema).
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const api = async (path: string, body?: unknown): Promise<{ status: number; json: Json }> => {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    ...(body !== undefined && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Json };
};

/** The value of the series of `name` for pool default with `labels` (whatever order prom-client prints them in). */
function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = { pool: 'default', ...labels };
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(want).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

const accuracy = (labels: readonly string[]): number =>
  labels.filter((l, i) => l === heldOut[i]!.label).length / heldOut.length;

describe.skipIf(!existsSync(dataDir))('train → serve on npm start', () => {
  it('trains with 3 workers, evaluates, registers, delivers the webhook, and serves the model by name', async () => {
    // One worker to start with: the gang of 3 must make the autoscaler grow the pool.
    const replicas = await until(async () => {
      const r = (await api('/v1/scheduler/explain?pool=default')).json.pools[0]?.autoscale?.replicas as
        Json | undefined;
      return r?.ready === 1 ? r : undefined;
    }, 20_000);
    expect(replicas).toMatchObject({ desired: 1, ready: 1 });
    const started = Date.now();
    const created = await api('/v1/training/jobs', {
      pool: 'default',
      command: 'builtin:text-classifier',
      data_uri: pathToFileURL(join(dir, 'train')).href + '/',
      shard: 'lines',
      mode: 'rounds',
      workers: 3,
      rounds: 3,
      params: { epochs: 3, holdout: 0 },
      checkpoint_uri: pathToFileURL(join(dir, 'run')).href + '/',
      eval_uri: pathToFileURL(join(dir, 'eval.tsv')).href,
      model_name: 'uci-sentiment',
      webhook_url: hookUrl,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const id = created.json.id as string;

    let last = '';
    const job = await until(async () => {
      await new Promise((r) => setTimeout(r, 250));
      const json = apiTrainingJobSchema.parse((await api(`/v1/training/jobs/${id}`)).json);
      last = `${json.status} round ${json.round} waiting ${String(json.waiting_reason)} webhook ${JSON.stringify(json.webhook)} manifest_error ${String(json.manifest_error)}`;
      if (json.status === 'failed' || json.status === 'cancelled')
        throw new Error(`job ${last}: ${String(json.error)}`);
      return json.status === 'succeeded' && json.webhook?.status !== 'pending' && json.webhook ? json : undefined;
    }, 150_000).catch((err: unknown) => {
      throw new Error(`training did not finish: ${last}\n${launcher!.output().slice(-3000)}`, { cause: err });
    });
    const trainedIn = (Date.now() - started) / 1000;
    // Every round ran its 3 ranks on 3 different workers.
    for (const round of [1, 2, 3])
      expect(new Set(job.ranks.filter((r) => r.round === round).map((r) => r.worker)).size).toBe(3);

    // The manifest: in the job and in storage beside the checkpoints, the same.
    const manifest: TrainingManifest = trainingManifestSchema.parse(job.manifest);
    const stored = trainingManifestSchema.parse(JSON.parse(await readFile(new URL(manifest.manifest_uri), 'utf8')));
    expect(stored).toEqual(manifest);
    expect(manifest).toMatchObject({
      status: 'succeeded',
      workers: 3,
      rounds: 3,
      rounds_completed: 3,
      model_name: 'uci-sentiment',
    });
    expect(manifest.per_round.map((r) => [r.round, r.ranks, r.ranks_succeeded])).toEqual([
      [1, 3, 3],
      [2, 3, 3],
      [3, 3, 3],
    ]);
    for (const r of manifest.per_round) expect(r.metrics.loss).toBeGreaterThan(0);
    expect(manifest.per_round[2]!.metrics.loss).toBeLessThan(manifest.per_round[0]!.metrics.loss!);
    // The checksum is the files' in storage.
    const artifact = manifest.artifact!;
    expect(artifact.uri).toBe(`${pathToFileURL(join(dir, 'run')).href}/round-3/model/`);
    expect(modelChecksum(await digestDir(fileURLToPath(artifact.uri)))).toBe(artifact.sha256);
    const evaluation = manifest.evaluation!;
    expect(evaluation.examples).toBe(heldOut.length);

    // Baselines on the same split: the majority class, and the embedded lexicon classifier (neutral is wrong).
    const lexicon = createSentimentClassifier(createNlp());
    const lexiconAccuracy = accuracy(heldOut.map((e) => lexicon.classify(e.text).label));
    console.log(
      `train-serve: ${train.length} training and ${heldOut.length} held-out sentences, 3 workers × 3 rounds in ${trainedIn.toFixed(1)} s; ` +
        `held-out accuracy ${evaluation.accuracy.toFixed(3)} (majority class ${evaluation.majority_class_accuracy.toFixed(3)}, ` +
        `lexicon ${lexiconAccuracy.toFixed(3)}); loss per round ${manifest.per_round.map((r) => r.metrics.loss!.toFixed(3)).join(' → ')}`,
    );
    expect(evaluation.accuracy).toBeGreaterThan(evaluation.majority_class_accuracy);
    expect(evaluation.accuracy).toBeGreaterThan(lexiconAccuracy);

    // The webhook: tried twice (503, then 204), signed, recorded in the job.
    expect(job.webhook).toMatchObject({ status: 'delivered', attempts: 2, last_status_code: 204, url: hookUrl });
    expect(deliveries).toHaveLength(2);
    for (const d of deliveries) {
      expect(d.delivery).toBe(id);
      expect(verifyWebhook(secret, d.body, d.signature, Math.floor(Date.now() / 1000))).toBe(true);
      expect(verifyWebhook('another-secret-0123456789', d.body, d.signature, Math.floor(Date.now() / 1000))).toBe(
        false,
      );
    }
    const hook = JSON.parse(deliveries[1]!.body);
    expect(hook).toMatchObject({ type: 'training.job.ended', job: { id, status: 'succeeded', manifest } });

    // The registry.
    const registered = await api('/v1/trained-models/uci-sentiment');
    expect(registered.json).toMatchObject({
      name: 'uci-sentiment',
      uri: artifact.uri,
      sha256: artifact.sha256,
      job_id: id,
      classes: ['negative', 'positive'],
      evaluation: { accuracy: evaluation.accuracy, examples: heldOut.length },
    });
    expect((await api('/v1/trained-models')).json.data.map((m: { name: string }) => m.name)).toEqual(['uci-sentiment']);

    // Served in real time by name: the same labels the evaluation scored.
    const served: string[] = new Array<string>(heldOut.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < heldOut.length) {
          const i = next++;
          const r = await api('/v1/infer', {
            model: 'default',
            input: { task: 'sentiment', text: heldOut[i]!.text, model: 'uci-sentiment' },
          });
          expect(r.status, JSON.stringify(r.json)).toBe(200);
          served[i] = r.json.output.label;
        }
      }),
    );
    expect(accuracy(served)).toBe(evaluation.accuracy);
    // The SDK and the CLI name it too.
    const client = new InterfleetClient({ baseUrl: url });
    expect((await client.sentiment('default', heldOut[0]!.text, { trainedModel: 'uci-sentiment' })).label).toBe(
      served[0],
    );
    let printed = '';
    await buildProgram({
      stdout: { write: (t: string) => (printed += t) },
      client: (u) => new InterfleetClient({ baseUrl: u }),
      now: Date.now,
      setExitCode: () => undefined,
    }).parseAsync(['node', 'interfleet', 'models', 'list', '--url', url]);
    expect(printed).toMatch(new RegExp(`^uci-sentiment +${evaluation.accuracy.toFixed(3)} on ${heldOut.length} `, 'm'));
    const lexiconServed = await api('/v1/infer', {
      model: 'default',
      input: { task: 'sentiment', text: heldOut[0]!.text },
    });
    expect(lexiconServed.json.output.label).toBe(lexicon.classify(heldOut[0]!.text).label);
    const unknown = await api('/v1/infer', {
      model: 'default',
      input: { task: 'sentiment', text: 'fine', model: 'nope' },
    });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatchObject({ code: 'model_not_found', param: 'input.model' });

    // And in a batch: lines naming the model, one naming no registered model.
    const lines = heldOut.map((e, i) =>
      JSON.stringify({
        custom_id: `e${i}`,
        method: 'POST',
        url: '/v1/infer',
        body: { input: { task: 'sentiment', text: e.text, model: 'uci-sentiment' } },
      }),
    );
    lines.push(
      JSON.stringify({
        custom_id: 'unknown',
        method: 'POST',
        url: '/v1/infer',
        body: { input: { task: 'sentiment', text: 'fine', model: 'nope' } },
      }),
    );
    await writeFile(join(dir, 'batch.jsonl'), `${lines.join('\n')}\n`);
    const batch = await api('/v1/batches', {
      input_file: pathToFileURL(join(dir, 'batch.jsonl')).href,
      endpoint: '/v1/infer',
      model: 'default',
    });
    expect(batch.status, JSON.stringify(batch.json)).toBe(200);
    const ended = await until(async () => {
      await new Promise((r) => setTimeout(r, 250));
      const { json } = await api(`/v1/batches/${String(batch.json.id)}`);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(json.status) ? json : undefined;
    }, 60_000);
    expect(ended.status).toBe('completed');
    const out = (await readFile(new URL(ended.output_file), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const errs = (await readFile(new URL(ended.error_file), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const byId = new Map(out.map((o) => [o.custom_id as string, o.response.body.output.label as string]));
    expect(accuracy(heldOut.map((_, i) => byId.get(`e${i}`)!))).toBe(evaluation.accuracy);
    expect(errs.map((e) => [e.custom_id, e.error.code])).toEqual([['unknown', 'model_not_found']]);

    // Training metrics on the scheduler's /metrics: per pool and status, no per-job label.
    const metricsUrl = /(http:\/\/127\.0\.0\.1:\d+\/metrics) \(scheduler\)/.exec(launcher!.output())?.[1];
    expect(metricsUrl).toBeDefined();
    const metrics = await (await fetch(metricsUrl!)).text();
    expect(metricValue(metrics, 'interfleet_scheduler_training_jobs_ended_total', { status: 'succeeded' })).toBe(1);
    expect(metricValue(metrics, 'interfleet_scheduler_training_rounds_completed_total', {})).toBe(3);
    expect(metricValue(metrics, 'interfleet_scheduler_training_round_seconds_count', {})).toBe(3);
    expect(metricValue(metrics, 'interfleet_scheduler_training_webhook_attempts_total', { outcome: 'retry' })).toBe(1);
    expect(metricValue(metrics, 'interfleet_scheduler_training_webhook_attempts_total', { outcome: 'delivered' })).toBe(
      1,
    );
    expect(metricValue(metrics, 'interfleet_scheduler_training_last_eval_accuracy', {})).toBe(evaluation.accuracy);
    expect(metricValue(metrics, 'interfleet_autoscaler_decisions_total', { reason: 'training_gangs' })).toBeGreaterThan(
      0,
    );
    expect(metrics).not.toContain(id);

    launcher!.proc.kill('SIGINT');
    expect(await launcher!.exited).toBe(0);
  }, 240_000);
});
