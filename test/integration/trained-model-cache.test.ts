/**
 * Serving trained models without a restart, on a real Redis registry and
 * file:// storage: the first request naming a model loads it (once, however
 * many ask at once), later ones reuse it, a name re-registered to other
 * bytes is loaded again, files that do not match the registered checksum
 * and unknown names are refused with their codes, the cache keeps at most
 * `capacity` models, and the backend wrapper answers named sentiment inputs
 * while everything else reaches the pool's backend (real time and batches).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../common/errors.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { digestDir, modelChecksum } from '../../common/training/model-checksum.ts';
import { TrainedModelRegistry } from '../../common/training/trained-model-registry.ts';
import { createEchoBackend } from '../../gpu-worker/backends/echo.ts';
import { withTrainedModels } from '../../gpu-worker/backends/trained-sentiment.ts';
import { TrainedModelCache } from '../../gpu-worker/trained-model-cache.ts';
import { featurize, newModel, writeModelDir } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { deleteKeys, REDIS_URL } from '../helpers/fleet.ts';

const prefix = `t-models-${randomUUID().slice(0, 8)}`;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  dir = await mkdtemp(join(tmpdir(), 'interfleet-models-'));
});

afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

/** A model in storage where `word` means `label`; its URI and checksum. */
async function modelFor(word: string, label: 'positive' | 'negative', classes = ['negative', 'positive']) {
  const uri = `${pathToFileURL(join(dir, randomUUID())).href}/`;
  const model = newModel({ features: 1024, ngrams: 1, classes });
  model.weights[classes.indexOf(label) * 1024 + featurize(word, 1024, 1).indices[0]!] = 5;
  await writeModelDir(fileURLToPath(uri), model);
  return { uri, sha256: modelChecksum(await digestDir(fileURLToPath(uri))), classes };
}

const register = (
  registry: TrainedModelRegistry,
  name: string,
  m: { uri: string; sha256: string; classes: string[] },
) => registry.register({ name, ...m, job_id: 'train_0', pool: 'p', created_at: 0, evaluation: null });

describe('trained models served by name', () => {
  const registry = () => new TrainedModelRegistry(redis, prefix);
  const cache = (capacity = 2) =>
    new TrainedModelCache({ registry: registry(), storage: createFileStorage(), capacity, logger: silentLogger() });

  it('loads on first use, once, reloads when the name is re-registered to other bytes, and evicts beyond capacity', async () => {
    const r = registry();
    await register(r, 'a', await modelFor('great', 'positive'));
    const c = cache(2);
    const backend = withTrainedModels(createEchoBackend(), c);
    const run = (text: string, model?: string) =>
      backend.run({ task: 'sentiment', text, ...(model && { model }) }, { signal: new AbortController().signal });

    const answers = await Promise.all([run('great', 'a'), run('great', 'a'), run('meh', 'a')]);
    expect(answers.map((a) => a.task === 'sentiment' && a.label)).toEqual(['positive', 'positive', 'negative']);
    expect(c.loads).toBe(1);
    // No model named: the pool's own backend answers.
    expect(await run('great')).toMatchObject({ task: 'sentiment' });
    expect(c.loads).toBe(1);

    // Re-registered to a model where "great" is negative: loaded again on the next request.
    await register(r, 'a', await modelFor('great', 'negative'));
    expect(await run('great', 'a')).toMatchObject({ label: 'negative' });
    expect(c.loads).toBe(2);
    expect(await run('great', 'a')).toMatchObject({ label: 'negative' });
    expect(c.loads).toBe(2);

    // Capacity 2: a third model evicts the least recently used (a), which then loads again.
    await register(r, 'b', await modelFor('fine', 'positive'));
    await register(r, 'c', await modelFor('fine', 'positive'));
    await run('fine', 'b');
    await run('fine', 'c');
    expect(c.loads).toBe(4);
    await run('fine', 'a');
    expect(c.loads).toBe(5);
  });

  it('refuses unknown names, files that do not match the checksum, and classes that are not sentiment labels', async () => {
    const r = registry();
    const c = cache();
    await expect(c.get('missing')).rejects.toMatchObject({ code: 'model_not_found' });

    const m = await modelFor('great', 'positive');
    await register(r, 'tampered', m);
    await writeFile(join(fileURLToPath(m.uri), 'bias.f32'), Buffer.alloc(8, 1));
    const err = await c.get('tampered').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FleetError);
    expect((err as FleetError).message).toMatch(/checksum [0-9a-f]{64}, not the registered/);
    // Not cached: fixed files are loaded on the next request.
    await register(r, 'tampered', { ...m, sha256: modelChecksum(await digestDir(fileURLToPath(m.uri))) });
    await expect(c.get('tampered')).resolves.toMatchObject({ classes: ['negative', 'positive'] });

    await register(r, 'digits', await modelFor('great', 'positive', ['0', '1']));
    const backend = withTrainedModels(createEchoBackend(), c);
    await expect(
      backend.run({ task: 'sentiment', text: 'great', model: 'digits' }, { signal: new AbortController().signal }),
    ).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('answers a micro-batch mixing named models, an unknown name and plain inputs, each in its slot', async () => {
    const r = registry();
    await register(r, 'mix', await modelFor('great', 'positive'));
    const inner = createEchoBackend();
    const backend = withTrainedModels(inner, cache());
    expect(backend.runMany).toBeDefined();
    const out = await backend.runMany!(
      [
        { task: 'sentiment', text: 'great', model: 'mix' },
        { task: 'summarize', text: 'One. Two.', maxSentences: 1 },
        { task: 'sentiment', text: 'great', model: 'unknown-name' },
        { task: 'sentiment', text: 'bad', model: 'mix' },
      ],
      { signal: new AbortController().signal },
    );
    expect(out[0]).toMatchObject({ task: 'sentiment', label: 'positive' });
    expect(out[1]).toMatchObject({ task: 'summarize' });
    expect(out[2]).toMatchObject({ code: 'model_not_found' });
    expect(out[3]).toMatchObject({ task: 'sentiment', label: 'negative' });
  });
});
