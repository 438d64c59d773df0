import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Chunk } from '../../../common/contracts/batch.ts';
import { createFileStorage, isStorageError, StorageError, type Storage } from '../../../common/storage/index.ts';
import { readPlan, readPlanEntries, writePlan } from '../../../common/batch/plan-file.ts';
import { planToStorage } from '../../../producer/batch/plan-to-storage.ts';
import { planBatch } from '../../../producer/batch/planner.ts';
import { sentimentLine } from '../bulk/fixtures.ts';

const storage = createFileStorage();
const batch = { endpoint: '/v1/infer', model: 'sentiment' } as const;
const sentiment = sentimentLine;

let dir: string;
const uri = (name: string) => pathToFileURL(join(dir, name)).href;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-plan-file-'));
  const rows = Array.from({ length: 50 }, (_, i) => sentiment(`id-${i % 45}`, `text ${i}`));
  await writeFile(join(dir, 'input.jsonl'), `${rows.join('\n')}\n`);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function planned(): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  await planBatch(storage, uri('input.jsonl'), { ...batch, chunkLines: 7 }, (c) => {
    chunks.push(c);
  });
  return chunks;
}

describe('plan file', () => {
  it('writes chunks as JSONL, create-only, and reads them back from any index', async () => {
    const chunks = await planned();
    expect(chunks.length).toBe(8);
    const first = await writePlan(
      storage,
      uri('plan-a.jsonl'),
      (async function* () {
        yield* chunks;
      })(),
    );
    expect(first).toEqual({ created: true, chunks: 8 });
    expect((await readFile(join(dir, 'plan-a.jsonl'), 'utf8')).split('\n').length).toBe(9);
    const again = await writePlan(
      storage,
      uri('plan-a.jsonl'),
      (async function* () {
        yield* chunks.slice(0, 1);
      })(),
    );
    expect(again.created).toBe(false);
    expect(await all(readPlan(storage, uri('plan-a.jsonl')))).toEqual(chunks);
    expect(await all(readPlan(storage, uri('plan-a.jsonl'), 5))).toEqual(chunks.slice(5));
  });

  it('resumes from a byte cursor', async () => {
    const chunks = await planned();
    await writePlan(
      storage,
      uri('plan-b.jsonl'),
      (async function* () {
        yield* chunks;
      })(),
    );
    const entries = await all(readPlanEntries(storage, uri('plan-b.jsonl')));
    const cursor = entries[2]!.nextByte; // where chunk 3 starts
    expect(await all(readPlan(storage, uri('plan-b.jsonl'), 3, { startByte: cursor }))).toEqual(chunks.slice(3));
    await expect(all(readPlan(storage, uri('plan-b.jsonl'), 4, { startByte: cursor }))).rejects.toThrow(/chunk 3/);
  });

  it('refuses chunks out of order', async () => {
    const chunks = await planned();
    const err = await writePlan(
      storage,
      uri('plan-c.jsonl'),
      (async function* () {
        yield chunks[1]!;
      })(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    await expect(storage.stat(uri('plan-c.jsonl'))).rejects.toThrow(StorageError);
  });

  it('planToStorage plans straight into the plan object, and keeps an existing one on a re-run', async () => {
    const result = await planToStorage(storage, uri('input.jsonl'), uri('plan-d.jsonl'), { ...batch, chunkLines: 7 });
    expect(result).toMatchObject({ created: true, totalLines: 50, duplicateLines: 5, chunks: 8 });
    expect(await all(readPlan(storage, uri('plan-d.jsonl')))).toEqual(await planned());
    const before = await readFile(join(dir, 'plan-d.jsonl'));
    const rerun = await planToStorage(storage, uri('input.jsonl'), uri('plan-d.jsonl'), { ...batch, chunkLines: 7 });
    expect(rerun).toMatchObject({ created: false, totalLines: 50, duplicateLines: 5, chunks: 8 });
    expect(await readFile(join(dir, 'plan-d.jsonl'))).toEqual(before);
  });

  it('planToStorage counts past the queue when an existing plan is kept unread (more chunks than the queue holds)', async () => {
    const opts = { ...batch, chunkLines: 1 };
    expect(await planToStorage(storage, uri('input.jsonl'), uri('plan-g.jsonl'), opts)).toMatchObject({ chunks: 50 });
    const rows = Array.from({ length: 300 }, (_, i) => sentiment(`r-${i}`, 'x'));
    await writeFile(join(dir, 'input-300.jsonl'), `${rows.join('\n')}\n`);
    const rerun = await planToStorage(storage, uri('input-300.jsonl'), uri('plan-g.jsonl'), opts);
    expect(rerun).toMatchObject({ created: false, chunks: 300, totalLines: 300 });
  });

  it('planToStorage publishes nothing when planning fails', async () => {
    const err = await planToStorage(storage, uri('missing.jsonl'), uri('plan-e.jsonl'), batch).catch((e: unknown) => e);
    expect(isStorageError(err, 'not_found')).toBe(true);
    await expect(storage.stat(uri('plan-e.jsonl'))).rejects.toThrow(StorageError);
  });

  it('planToStorage stops planning when the plan cannot be written', async () => {
    const denied: Storage = {
      ...storage,
      writeIfAbsent: async () => {
        throw new StorageError('permission_denied', 'no write access to the plan');
      },
    };
    const err = await planToStorage(denied, uri('input.jsonl'), uri('plan-f.jsonl'), batch).catch((e: unknown) => e);
    expect(isStorageError(err, 'permission_denied')).toBe(true);
  });
});
