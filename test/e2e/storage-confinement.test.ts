/**
 * What a caller may name, through the real HTTP API and the official
 * `openai` client: a batch whose input or output lies outside
 * storage.file.roots, leads there through a symbolic link, or is spelled
 * with `..` is refused (403 / 400) before anything is read, written or
 * queued. And on the worker, where the file adapter checks again at every
 * open: a chunk job injected straight into Redis naming a file outside the
 * roots, and an input swapped for a link after the API's check, fail with
 * the reason and read nothing.
 */
import { mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, chunkJobFor } from '../../common/batch/batch-state.ts';
import { silentLogger } from '../../common/logger.ts';
import { batchControlQueue, queueName } from '../../common/topology.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

const SECRET = 'the-secret-outside-the-root';

let fleet: TestFleet;
let openai: OpenAI;
let store: BatchStore;
let dir: string;
let root: string;
let outside: string;

const line = (id: string) =>
  JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/infer', body: { input: { text: `hello ${id}` } } });
const uri = (...parts: string[]) => pathToFileURL(join(...parts)).href;

beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'interfleet-confinement-e2e-')));
  root = join(dir, 'root');
  outside = join(dir, 'outside');
  await mkdir(root);
  await mkdir(outside);
  // A valid batch input, outside the root: were it read, its lines would come back in the output.
  await writeFile(join(outside, 'secret.jsonl'), [line(SECRET), line(`${SECRET}-2`)].join('\n') + '\n');
  await writeFile(join(root, 'in.jsonl'), [line('a'), line('b')].join('\n') + '\n');
  await symlink(join(outside, 'secret.jsonl'), join(root, 'link.jsonl'));
  await symlink(outside, join(root, 'out-dir'));
  fleet = await startFleet({
    yaml: 'pools: [{ name: tiny, backend: echo }]',
    workers: 1,
    env: { INTERFLEET_FILE_ROOTS: root },
  });
  openai = new OpenAI({ baseURL: `${fleet.producer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  store = new BatchStore(fleet.redis, fleet.prefix);
});
afterAll(async () => {
  await fleet?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function refusal(body: Record<string, unknown>): Promise<{ status: number; code: string; param: string }> {
  const err = await openai.batches
    .create({ endpoint: '/v1/chat/completions', completion_window: '24h', ...body } as never)
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err, `expected a refusal of ${JSON.stringify(body)}`).toBeInstanceOf(OpenAI.APIError);
  const api = err as InstanceType<typeof OpenAI.APIError>;
  return { status: api.status!, code: String(api.code), param: String(api.param) };
}

describe('a batch naming storage it may not', () => {
  it.each([
    ['file:///etc/passwd as input', () => ({ input_file_id: 'file:///etc/passwd' }), 403, 'forbidden', 'input_file_id'],
    ['an input outside the root', () => ({ input_file: uri(outside, 'secret.jsonl') }), 403, 'forbidden', 'input_file'],
    ['a link out of the root', () => ({ input_file: uri(root, 'link.jsonl') }), 403, 'forbidden', 'input_file'],
    [
      'an output outside the root',
      () => ({ input_file: uri(root, 'in.jsonl'), output_location: uri(outside, 'out') }),
      403,
      'forbidden',
      'output_location',
    ],
    [
      'an output through a linked folder',
      () => ({ input_file: uri(root, 'in.jsonl'), output_location: uri(root, 'out-dir', 'run') }),
      403,
      'forbidden',
      'output_location',
    ],
    [
      'an input spelled with ..',
      () => ({ input_file: `${uri(root)}/../outside/secret.jsonl` }),
      400,
      'bad_request',
      'input_file',
    ],
    [
      'an output spelled with %2e%2e',
      () => ({ input_file: uri(root, 'in.jsonl'), output_location: `${uri(root)}/%2e%2e/outside/` }),
      400,
      'bad_request',
      'output_location',
    ],
  ] as const)('%s is refused, and nothing is created, read or written', async (_what, body, status, code, param) => {
    expect(await refusal(body())).toEqual({ status, code, param });
    expect((await store.listIds(10)).ids).toEqual([]);
    const control = new Queue(batchControlQueue, { connection: fleet.redis, prefix: fleet.prefix });
    try {
      expect(await control.count()).toBe(0);
    } finally {
      await control.close();
    }
    expect((await readdir(outside)).sort()).toEqual(['secret.jsonl']);
  });

  it('is answered with a message that names the field and the roots', async () => {
    const err = await openai.batches
      .create({ input_file_id: 'file:///etc/passwd', endpoint: '/v1/chat/completions', completion_window: '24h' })
      .catch((e: unknown) => e as InstanceType<typeof OpenAI.PermissionDeniedError>);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((err as Error).message).toContain(
      `input_file_id: file:///etc/passwd is outside the folders file:// may name (storage.file.roots: ${root})`,
    );
  });
});

describe('on the worker, where the file adapter checks again at every open', () => {
  async function plannedBatch(input: string) {
    const created = await openai.batches.create({
      input_file_id: uri(root, input),
      endpoint: '/v1/infer' as never,
      completion_window: '24h',
    });
    // Planned by the producer (no scheduler yet, so nothing is admitted).
    await until(async () => ((await store.get(created.id))?.status === 'in_progress' ? true : undefined));
    return (await store.get(created.id))!;
  }

  it('fails a chunk job injected into Redis that names a file outside the roots, reading nothing', async () => {
    const state = await plannedBatch('in.jsonl');
    const queue = new Queue(queueName('bulk', 'tiny'), { connection: fleet.redis, prefix: fleet.prefix });
    try {
      const secretUri = uri(outside, 'secret.jsonl');
      const size = (await readFile(join(outside, 'secret.jsonl'))).length;
      const data = chunkJobFor(state.spec, {
        index: 0,
        input: secretUri,
        start: 0,
        end: size,
        firstLine: 1,
        lines: 2,
        duplicateLines: [],
      });
      const job = await queue.add('chunk', data, { jobId: `injected-${state.spec.id}`, attempts: 1 });
      const failed = await until(async () => ((await job.isFailed()) ? queue.getJob(job.id!) : undefined), 20_000);
      expect(failed.failedReason).toContain(`permission_denied: ${secretUri} is outside the allowed roots`);
      const written = await readdir(join(root, state.spec.id), { recursive: true }).catch(() => []);
      for (const f of written.filter((name) => name.endsWith('.jsonl'))) {
        expect(await readFile(join(root, state.spec.id, f), 'utf8')).not.toContain(SECRET);
      }
    } finally {
      await queue.close();
    }
  });

  it('refuses an input swapped for a link out of the root after the API check: the chunk fails with the reason', async () => {
    await writeFile(join(root, 'swap.jsonl'), [line('s1'), line('s2')].join('\n') + '\n');
    const state = await plannedBatch('swap.jsonl');
    await unlink(join(root, 'swap.jsonl'));
    await symlink(join(outside, 'secret.jsonl'), join(root, 'swap.jsonl'));
    const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
    try {
      // Admitted now; the worker's adapter resolves the link at open and refuses it.
      const reasons = await until(async () => {
        const errors = await store.chunkErrors(state.spec.id);
        return errors.size > 0 ? errors : undefined;
      }, 20_000);
      expect(reasons.get(0)).toContain(
        `permission_denied: ${uri(root, 'swap.jsonl')} leads through a symbolic link out of the allowed roots`,
      );
      const b = await openai.batches.retrieve(state.spec.id);
      expect(b.request_counts?.completed).toBe(0);
      const files = await readdir(join(root, state.spec.id), { recursive: true }).catch(() => []);
      for (const f of files.filter((name) => name.endsWith('.jsonl'))) {
        expect(await readFile(join(root, state.spec.id, f), 'utf8'), f).not.toContain(SECRET);
      }
    } finally {
      await scheduler.close();
    }
  }, 60_000);
});
