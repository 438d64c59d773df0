/**
 * Batch inference end to end: the real producer (HTTP API, planning,
 * finalisation), the real scheduler (admission, expiry), real gpu-workers
 * (in-process, or child processes where one is killed), real Redis under a
 * private prefix, and real storage: file:// on disk and gs:// through the
 * real @google-cloud/storage client against the local GCS JSON API stand-in,
 * and oci:// through the real OCI SDK (config-file auth, every request
 * signed and checked) against the local OCI REST stand-in.
 * Batches are created and read with the official `openai` client.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { createStorage, type Storage } from '../../common/storage/index.ts';
import { startWorker, type RunningWorker } from '../../gpu-worker/worker.ts';
import { startProducer, type RunningProducer } from '../../producer/server.ts';
import { startScheduler, type RunningScheduler } from '../../scheduler/scheduler.ts';
import { Child } from '../bench/children.ts';
import { testFileRootsEnv } from '../helpers/file-roots.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';
import { ociKeyPair, quietOciSdkWarnings, writeOciConfigFile } from '../helpers/storage/oci-credentials.ts';
import { startStandIn, type StandIn } from '../helpers/storage/stand-in.ts';
import { Redis } from 'ioredis';
import type { Config } from '../../common/config.ts';

// No credentials are used (auth: none), and nothing may probe for a metadata server.
process.env.METADATA_SERVER_DETECTION = 'none';

const bucket = 'interfleet-e2e';
const deniedBucket = 'interfleet-e2e-denied';
const ociBucket = 'interfleet-e2e-oci';
const ociNamespace = 'interfleetns';
const workerEntry = fileURLToPath(new URL('../../gpu-worker/main.ts', import.meta.url));
const dataDir = fileURLToPath(new URL('../../../shared/data/sentiment-labelled-sentences/', import.meta.url));

interface Labelled {
  text: string;
  label: 0 | 1;
}

/** The 3,000 labelled sentences (the IMDb file has odd line terminators: split on any). */
async function labelledSentences(): Promise<Labelled[]> {
  const out: Labelled[] = [];
  for (const f of ['amazon_cells_labelled.txt', 'imdb_labelled.txt', 'yelp_labelled.txt']) {
    for (const line of (await readFile(join(dataDir, f), 'utf8')).split(/\r?\n|\r/)) {
      const m = /^(.*)\t\s*([01])\s*$/.exec(line);
      if (m) out.push({ text: m[1]!.trim(), label: Number(m[2]) as 0 | 1 });
    }
  }
  return out;
}

const inferLine = (id: string, text: string): string =>
  JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/infer', body: { input: { task: 'sentiment', text } } });

const chatLine = (id: string, prompt: string, maxTokens = 24): string =>
  JSON.stringify({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'default', messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens },
  });

interface OutLine {
  id: string;
  custom_id: string | null;
  line?: number;
  response: { status_code: number; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

function jsonl(text: string): OutLine[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as OutLine);
}

async function readUri(storage: Storage, uri: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await storage.read(uri)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

interface Fleet {
  config: Config;
  producer: RunningProducer;
  scheduler: RunningScheduler;
  workers: RunningWorker[];
  children: Child[];
  openai: OpenAI;
  storage: Storage;
  redis: Redis;
  stop(): Promise<void>;
}

const fastTimings = `
scheduler: { renewEveryMs: 100, leaseTtlMs: 2000 }
`;

async function startBatchFleet(opts: {
  yaml: string;
  workers?: number;
  childWorkers?: number;
  gcsEndpoint?: string;
  /** oci:// through the stand-in, signed with the key an OCI config file names (the config-file auth path). */
  oci?: { endpoint: string; configFile: string };
}): Promise<Fleet> {
  const storageYaml = opts.gcsEndpoint
    ? `storage: { gcs: { apiEndpoint: "${opts.gcsEndpoint}", auth: none } }\n`
    : opts.oci
      ? `storage: { oci: { endpoint: "${opts.oci.endpoint}", auth: config-file, configFile: "${opts.oci.configFile}" } }\n`
      : '';
  const yaml = `${fastTimings}${storageYaml}${opts.yaml}`;
  const config = testConfig(yaml);
  const logger = silentLogger();
  const children: Child[] = [];
  if (opts.childWorkers) {
    const dir = await mkdtemp(join(tmpdir(), 'interfleet-e2e-cfg-'));
    const file = join(dir, 'config.yaml');
    await writeFile(file, yaml);
    for (let i = 0; i < opts.childWorkers; i++) {
      children.push(
        Child.start(
          `worker-${i}`,
          workerEntry,
          {
            INTERFLEET_CONFIG: file,
            ...testFileRootsEnv,
            REDIS_URL,
            INTERFLEET_PREFIX: config.redis.prefix,
            WORKER_METRICS_PORT: '-1',
            LOG_LEVEL: 'silent',
          },
          60_000,
        ),
      );
    }
    await Promise.all(children.map((c) => c.ready));
  }
  const workers: RunningWorker[] = [];
  for (let i = 0; i < (opts.workers ?? 0); i++) workers.push(await startWorker(config, { logger }));
  const producer = await startProducer(config, { logger, port: 0 });
  const scheduler = await startScheduler(config, { logger });
  const redis = new Redis(REDIS_URL);
  const storage = createStorage(config.storage);
  return {
    config,
    producer,
    scheduler,
    workers,
    children,
    storage,
    redis,
    openai: new OpenAI({ baseURL: `${producer.url}/v1`, apiKey: 'unused', maxRetries: 0 }),
    async stop() {
      await Promise.all(children.map((c) => c.stop(3000)));
      await scheduler.close();
      await producer.close(0);
      await Promise.all(workers.map((w) => w.close(0)));
      await deleteKeys(redis, config.redis.prefix);
      redis.disconnect();
    },
  };
}

type ApiBatch = Awaited<ReturnType<OpenAI['batches']['retrieve']>> & {
  output_file?: string | null;
  error_file?: string | null;
  manifest_file?: string | null;
};

async function waitFor(
  fleet: Fleet,
  id: string,
  until: (b: ApiBatch) => boolean,
  timeoutMs = 60_000,
): Promise<ApiBatch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = (await fleet.openai.batches.retrieve(id)) as ApiBatch;
    if (until(b)) return b;
    if (Date.now() > deadline)
      throw new Error(`batch ${id} is ${b.status} after ${timeoutMs} ms: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const isFinal = (b: ApiBatch): boolean => ['completed', 'failed', 'expired', 'cancelled'].includes(b.status);

async function create(fleet: Fleet, body: Record<string, unknown>): Promise<ApiBatch> {
  return await fleet.openai.batches.create({
    completion_window: '24h',
    ...body,
  } as unknown as OpenAI.Batches.BatchCreateParams);
}

/** Output and error lines of a final batch; asserts every custom_id is in exactly one of them, once. */
async function results(fleet: Fleet, b: ApiBatch, expectedIds: readonly string[]) {
  const output = jsonl(await readUri(fleet.storage, b.output_file!));
  const errors = jsonl(await readUri(fleet.storage, b.error_file!));
  const seen = new Map<string, number>();
  for (const l of [...output, ...errors]) seen.set(l.custom_id!, (seen.get(l.custom_id!) ?? 0) + 1);
  const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  const missing = expectedIds.filter((id) => !seen.has(id));
  expect(twice, 'custom_ids that appear more than once').toEqual([]);
  expect(missing, 'custom_ids that appear in neither file').toEqual([]);
  expect(seen.size).toBe(expectedIds.length);
  expect(b.request_counts).toEqual({ total: expectedIds.length, completed: output.length, failed: errors.length });
  return { output, errors };
}

let standIn: StandIn;
let dir: string;

quietOciSdkWarnings();

beforeAll(async () => {
  standIn = await startStandIn('gcs', { buckets: [bucket, deniedBucket] });
  await standIn.deny(deniedBucket);
  dir = await mkdtemp(join(tmpdir(), 'interfleet-e2e-batch-'));
}, 60_000);

afterAll(async () => {
  await standIn?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('batch inference end to end', () => {
  it('runs the 3,000 labelled sentences through sentiment on gs://, every custom_id once, and reports accuracy', async () => {
    const fleet = await startBatchFleet({
      yaml: 'batch: { chunkLines: 64, windowPerPool: 6, admitEveryMs: 50 }\n',
      workers: 2,
      gcsEndpoint: standIn.url,
    });
    try {
      const sentences = await labelledSentences();
      expect(sentences.length).toBe(3000);
      const input = `gs://${bucket}/run-${randomUUID()}/sentences.jsonl`;
      const text = sentences.map((s, i) => inferLine(`s${i}`, s.text)).join('\n') + '\n';
      await fleet.storage.writeIfAbsent(input, Buffer.from(text));

      const created = await create(fleet, { input_file_id: input, endpoint: '/v1/infer', model: 'default' });
      expect(created.status).toBe('validating');
      const done = await waitFor(fleet, created.id, isFinal);
      expect(done.status).toBe('completed');
      const { output, errors } = await results(
        fleet,
        done,
        sentences.map((_, i) => `s${i}`),
      );
      expect(errors).toEqual([]);

      let right = 0;
      let rightDecided = 0;
      let decided = 0;
      for (const l of output) {
        const i = Number(l.custom_id!.slice(1));
        const out = (l.response!.body as { output: { label: string } }).output;
        const want = sentences[i]!.label === 1 ? 'positive' : 'negative';
        if (out.label === want) right++;
        if (out.label !== 'neutral') {
          decided++;
          if (out.label === want) rightDecided++;
        }
      }
      const accuracy = right / output.length;
      console.log(
        `sentiment accuracy over ${output.length} labelled sentences: ${(accuracy * 100).toFixed(1)} % strict, ` +
          `${((rightDecided / decided) * 100).toFixed(1)} % on the ${decided} answered positive/negative`,
      );
      expect(accuracy).toBeGreaterThan(0); // computed and printed; not a quality gate

      const manifest = JSON.parse(await readUri(fleet.storage, done.manifest_file!)) as Record<string, unknown>;
      expect(manifest).toMatchObject({ batch_id: created.id });
      expect(JSON.stringify(manifest)).toContain('sha256');
    } finally {
      await fleet.stop();
    }
  }, 120_000);

  it('runs a batch read from and written to oci:// (OCI SDK, config-file auth, signed requests)', async () => {
    const keys = ociKeyPair();
    const oci = await startStandIn('oci', {
      buckets: [ociBucket],
      namespace: ociNamespace,
      publicKeyPem: keys.publicKey,
    });
    const configFile = await writeOciConfigFile(dir, keys.privateKey, `oci-${randomUUID()}`);
    const fleet = await startBatchFleet({
      yaml: 'batch: { chunkLines: 16, windowPerPool: 4, admitEveryMs: 50 }\n',
      workers: 1,
      oci: { endpoint: oci.url, configFile },
    });
    try {
      const ids = Array.from({ length: 100 }, (_, i) => `o${i}`);
      const root = `oci://${ociBucket}@${ociNamespace}/run-${randomUUID()}/`;
      const text = ids
        .map((id, i) => inferLine(id, i % 2 ? 'a wonderful, delightful film' : 'a dull, awful mess'))
        .join('\n');
      await fleet.storage.writeIfAbsent(`${root}in/part-1.jsonl`, Buffer.from(`${text}\n`));
      const created = await create(fleet, { input_file_id: `${root}in/`, endpoint: '/v1/infer', model: 'default' });
      const done = await waitFor(fleet, created.id, isFinal);
      expect(done.status).toBe('completed');
      expect(done.output_file).toMatch(new RegExp(`^oci://${ociBucket}@${ociNamespace}/`));
      const { output, errors } = await results(fleet, done, ids);
      expect(errors).toEqual([]);
      expect(output).toHaveLength(100);
    } finally {
      await fleet.stop();
      await oci.close();
    }
  }, 90_000);

  it('completes a batch after kill -9 of a worker mid-batch: every custom_id once, no error lines', async () => {
    const fleet = await startBatchFleet({
      yaml: `
batch: { chunkLines: 8, windowPerPool: 4, admitEveryMs: 50 }
pools: [{ name: default, lanes: { bulk: { concurrency: 1, lockDurationMs: 1500, stalledIntervalMs: 500 } } }]
`,
      childWorkers: 2,
    });
    try {
      const ids = Array.from({ length: 120 }, (_, i) => `k${i}`);
      const input = join(dir, `kill-${randomUUID()}.jsonl`);
      await writeFile(input, ids.map((id) => chatLine(id, 'Once upon a time', 24)).join('\n') + '\n');
      const created = await create(fleet, {
        input_file_id: pathToFileURL(input).href,
        endpoint: '/v1/chat/completions',
        model: 'default',
      });
      // Kill one worker once some work is done, while it holds a chunk.
      await waitFor(fleet, created.id, (b) => b.request_counts!.completed >= 16 || isFinal(b));
      fleet.children[0]!.proc.kill('SIGKILL');
      const done = await waitFor(fleet, created.id, isFinal, 90_000);
      expect(done.status).toBe('completed');
      const { errors } = await results(fleet, done, ids);
      expect(errors).toEqual([]);
    } finally {
      await fleet.stop();
    }
  }, 150_000);

  it('cancels a running batch: finished lines delivered, the rest marked batch_cancelled', async () => {
    const fleet = await startBatchFleet({
      yaml: 'batch: { chunkLines: 5, windowPerPool: 2, admitEveryMs: 50 }\n',
      workers: 1,
    });
    try {
      const ids = Array.from({ length: 200 }, (_, i) => `c${i}`);
      const input = join(dir, `cancel-${randomUUID()}.jsonl`);
      await writeFile(input, ids.map((id) => chatLine(id, 'The cat', 16)).join('\n') + '\n');
      const created = await create(fleet, {
        input_file_id: pathToFileURL(input).href,
        endpoint: '/v1/chat/completions',
      });
      await waitFor(fleet, created.id, (b) => b.request_counts!.completed >= 5);
      const cancelling = (await fleet.openai.batches.cancel(created.id)) as ApiBatch;
      expect(['cancelling', 'cancelled']).toContain(cancelling.status);
      const done = await waitFor(fleet, created.id, isFinal);
      expect(done.status).toBe('cancelled');
      expect(done.cancelled_at).toEqual(expect.any(Number));
      const { output, errors } = await results(fleet, done, ids);
      expect(output.length).toBeGreaterThanOrEqual(5);
      expect(output.length).toBeLessThan(ids.length);
      expect(errors.every((e) => e.error!.code === 'batch_cancelled')).toBe(true);
      // Error lines stay in input order.
      const lines = errors.map((e) => e.line!);
      expect(lines).toEqual([...lines].sort((a, b) => a - b));
    } finally {
      await fleet.stop();
    }
  }, 90_000);

  it('expires a batch whose admitted chunks wait for a worker that never comes: every line batch_expired', async () => {
    const fleet = await startBatchFleet({ yaml: 'batch: { chunkLines: 5, windowPerPool: 4, admitEveryMs: 50 }\n' });
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `x${i}`);
      const input = join(dir, `expire-${randomUUID()}.jsonl`);
      await writeFile(input, ids.map((id) => chatLine(id, 'The cat', 4)).join('\n') + '\n');
      const created = await create(fleet, {
        input_file_id: pathToFileURL(input).href,
        endpoint: '/v1/chat/completions',
        completion_window: '2s',
      });
      // Admitted chunks sit in the queue: no pool worker runs.
      await waitFor(fleet, created.id, (b) => b.status === 'in_progress');
      const done = await waitFor(fleet, created.id, isFinal, 30_000);
      expect(done.status).toBe('expired');
      expect(done.expired_at).toEqual(expect.any(Number));
      const { output, errors } = await results(fleet, done, ids);
      expect(output).toEqual([]);
      expect(errors.map((e) => e.error!.code)).toEqual(ids.map(() => 'batch_expired'));
      expect(errors.map((e) => e.custom_id)).toEqual(ids);
    } finally {
      await fleet.stop();
    }
  }, 60_000);

  it('sends malformed lines to the error file with their line numbers and reasons, and runs the rest', async () => {
    const fleet = await startBatchFleet({ yaml: 'batch: { chunkLines: 3, admitEveryMs: 50 }\n', workers: 1 });
    try {
      const lines = [
        inferLine('ok1', 'I love it'),
        '{ not json',
        inferLine('ok1', 'duplicate id'),
        JSON.stringify({ custom_id: 'bad-body', method: 'POST', url: '/v1/infer', body: { input: { task: 'nope' } } }),
        '',
        JSON.stringify({ custom_id: 'bad-url', method: 'POST', url: '/v1/embeddings', body: {} }),
        inferLine('ok2', 'I hate it'),
      ];
      const input = join(dir, `malformed-${randomUUID()}.jsonl`);
      await writeFile(input, lines.join('\r\n'));
      const created = await create(fleet, { input_file_id: pathToFileURL(input).href, endpoint: '/v1/infer' });
      const done = await waitFor(fleet, created.id, isFinal);
      expect(done.status).toBe('completed');
      expect(done.request_counts).toEqual({ total: 6, completed: 2, failed: 4 });
      const errors = jsonl(await readFile(fileURLToPath(done.error_file!), 'utf8'));
      expect(errors.map((e) => [e.line, e.custom_id, e.error!.code])).toEqual([
        [2, null, 'invalid_json'],
        [3, 'ok1', 'duplicate_custom_id'],
        [4, 'bad-body', 'invalid_request'],
        [6, 'bad-url', 'invalid_request'],
      ]);
      expect(errors[2]!.error!.message).toContain('body.input');
      const output = jsonl(await readFile(fileURLToPath(done.output_file!), 'utf8'));
      expect(output.map((o) => o.custom_id)).toEqual(['ok1', 'ok2']);
    } finally {
      await fleet.stop();
    }
  }, 60_000);

  it('fails a batch whose input does not exist, or sits in a bucket it may not read, with a clear reason', async () => {
    const fleet = await startBatchFleet({
      yaml: 'batch: { admitEveryMs: 50 }\n',
      workers: 1,
      gcsEndpoint: standIn.url,
    });
    try {
      const missing = pathToFileURL(join(dir, 'no-such-input.jsonl')).href;
      const a = await create(fleet, { input_file_id: missing, endpoint: '/v1/infer' });
      const failedMissing = await waitFor(fleet, a.id, isFinal);
      expect(failedMissing.status).toBe('failed');
      expect(failedMissing.failed_at).toEqual(expect.any(Number));
      const missingError = failedMissing.errors!.data![0]!;
      expect(missingError.message).toContain('no-such-input.jsonl');
      expect(missingError.code).toMatch(/not_found/);

      const denied = `gs://${deniedBucket}/inputs/day.jsonl`;
      const b = await create(fleet, { input_file_id: denied, endpoint: '/v1/infer' });
      const failedDenied = await waitFor(fleet, b.id, isFinal);
      expect(failedDenied.status).toBe('failed');
      const deniedError = failedDenied.errors!.data![0]!;
      expect(deniedError.code).toMatch(/permission_denied/);
      expect(deniedError.message).toContain(deniedBucket);
    } finally {
      await fleet.stop();
    }
  }, 60_000);
});
