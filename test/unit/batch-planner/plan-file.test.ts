import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Chunk } from '../../../common/contracts/batch.ts';
import { createFileStorage, isStorageError, StorageError, type Storage } from '../../../common/storage/index.ts';
import {
  maxPieceChunks,
  pieceOf,
  pieceStart,
  readPlan,
  readPlanEntries,
  readPlanPieces,
} from '../../../common/batch/plan-file.ts';
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
  it('reads a plan back from any index, and from a byte cursor', async () => {
    const chunks = await planned();
    await planToStorage(storage, uri('input.jsonl'), uri('plan-b.jsonl'), { ...batch, chunkLines: 7 });
    expect((await readFile(join(dir, 'plan-b.jsonl'), 'utf8')).split('\n').length).toBe(9);
    expect(await all(readPlan(storage, uri('plan-b.jsonl')))).toEqual(chunks);
    expect(await all(readPlan(storage, uri('plan-b.jsonl'), 5))).toEqual(chunks.slice(5));
    const entries = await all(readPlanEntries(storage, uri('plan-b.jsonl')));
    const cursor = entries[2]!.nextByte; // where chunk 3 starts
    expect(await all(readPlan(storage, uri('plan-b.jsonl'), 3, { startByte: cursor }))).toEqual(chunks.slice(3));
    await expect(all(readPlan(storage, uri('plan-b.jsonl'), 4, { startByte: cursor }))).rejects.toThrow(/chunk 3/);
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

  it('planToStorage refuses to mix a re-run over a changed input with the pieces of the earlier run', async () => {
    const opts = { ...batch, chunkLines: 1 };
    expect(await planToStorage(storage, uri('input.jsonl'), uri('plan-g.jsonl'), opts)).toMatchObject({ chunks: 50 });
    const rows = Array.from({ length: 300 }, (_, i) => sentiment(`r-${i}`, 'x'));
    await writeFile(join(dir, 'input-300.jsonl'), `${rows.join('\n')}\n`);
    const err = await planToStorage(storage, uri('input-300.jsonl'), uri('plan-g.jsonl'), opts).catch((e) => e);
    expect(isStorageError(err, 'precondition_failed')).toBe(true);
    expect((err as StorageError).uri).toBe(uri('input-300.jsonl'));
  });

  it('piece bounds grow 1, 1, 2, 4, … to maxPieceChunks and pieceOf inverts them', () => {
    expect(Array.from({ length: 10 }, (_, p) => pieceStart(p))).toEqual([0, 1, 2, 4, 8, 16, 32, 64, 128, 192]);
    for (let i = 0; i < 1000; i++) {
      const p = pieceOf(i);
      expect(pieceStart(p) <= i && i < pieceStart(p + 1)).toBe(true);
    }
    expect(pieceStart(100) - pieceStart(99)).toBe(maxPieceChunks);
  });

  it('planToStorage publishes pieces in order as it cuts them, and admission reads them from any cursor', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => sentiment(`p-${i}`, `text ${i}`));
    await writeFile(join(dir, 'input-200.jsonl'), `${rows.join('\n')}\n`);
    const published: number[] = [];
    const pieces = uri('pieces-h/');
    const result = await planToStorage(storage, uri('input-200.jsonl'), uri('plan-h.jsonl'), {
      ...batch,
      chunkLines: 2,
      piecesPrefix: pieces,
      onPublished: (n) => void published.push(n),
    });
    expect(result).toMatchObject({ created: true, chunks: 100, totalLines: 200 });
    expect(published).toEqual([1, 2, 4, 8, 16, 32, 64, 100]);
    const chunks = await all(readPlan(storage, uri('plan-h.jsonl')));
    expect(chunks.map((c) => c.index)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect((await readFile(join(dir, 'pieces-h', 'plan-00000007.jsonl'), 'utf8')).split('\n').length).toBe(37);

    // Read the pieces as admission does, a few at a time, carrying (cursor, offset in its piece).
    const seen: Chunk[] = [];
    let cursor = 0;
    let planByte = 0;
    for (const take of [1, 2, 3, 7, 30, 40, 100]) {
      const entries = await all(readPlanPieces(storage, pieces, cursor, { planByte, published: 100, limit: take }));
      expect(entries.length).toBe(Math.min(take, 100 - cursor));
      seen.push(...entries.map((e) => e.chunk));
      cursor += entries.length;
      planByte = entries.at(-1)?.nextByte ?? planByte;
      if (cursor === pieceStart(pieceOf(cursor))) expect(planByte).toBe(0);
    }
    expect(seen).toEqual(chunks);
    // Only what is published is read; offset 0 past a piece's start reads it from the start and skips.
    expect(await all(readPlanPieces(storage, pieces, 5, { planByte: 0, published: 6 }))).toEqual([
      { chunk: chunks[5], nextByte: expect.any(Number) },
    ]);
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
