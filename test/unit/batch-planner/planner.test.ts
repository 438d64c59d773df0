import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBatchLine } from '../../../common/batch/parse-line.ts';
import { chunkSchema, type Chunk } from '../../../common/contracts/batch.ts';
import { createFileStorage, isStorageError, type Storage } from '../../../common/storage/index.ts';
import { splitLines as workerSplitLines } from '../../../gpu-worker/bulk/chunk-lines.ts';
import { planBatch, type PlanOptions } from '../../../producer/batch/planner.ts';
import { sentimentLine } from '../bulk/fixtures.ts';

const storage = createFileStorage();
const batch = { endpoint: '/v1/infer', model: 'sentiment' } as const;
const sentiment = sentimentLine;

let dir: string;
const uri = (name: string) => pathToFileURL(join(dir, name)).href;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-planner-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function plan(input: string, opts: Partial<PlanOptions> = {}) {
  const chunks: Chunk[] = [];
  const result = await planBatch(storage, input, { ...batch, ...opts }, (c) => {
    chunks.push(chunkSchema.parse(c));
  });
  return { result, chunks };
}

async function readRange(s: Storage, c: Chunk): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of await s.read(c.input, { start: c.start, end: c.end })) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

/** The non-blank lines of a whole object, numbered, as the worker sees them. */
/** The worker's lines of an object, or of the range of it that starts at byte `start` (`bytes`). */
async function objectLines(u: string, firstLine = 1, bytes?: Buffer, start = 0) {
  const data = bytes ?? (await readFile(new URL(u)));
  const out: { line: number; text: string | null; next: number }[] = [];
  for await (const l of workerSplitLines(Readable.from([data]), firstLine, undefined, start)) out.push(l);
  return out;
}

/** Checks the invariants every plan keeps, against the objects' bytes. */
async function checkTiling(chunks: Chunk[], objects: string[], chunkLines: number) {
  expect(chunks.map((c) => c.index)).toEqual(chunks.map((_, i) => i));
  for (const object of objects) {
    const mine = chunks.filter((c) => c.input === object);
    const data = await readFile(new URL(object));
    const all = await objectLines(object);
    if (all.length === 0) {
      expect(mine).toEqual([]);
      continue;
    }
    // Contiguous from 0 to the object's end.
    expect(mine[0]!.start).toBe(0);
    expect(mine.at(-1)!.end).toBe(data.length);
    for (let i = 1; i < mine.length; i++) expect(mine[i]!.start).toBe(mine[i - 1]!.end);
    // Each range holds exactly its lines, numbered from firstLine; together they are every line once.
    const seen: { line: number; text: string | null }[] = [];
    for (const c of mine) {
      const lines = await objectLines(object, c.firstLine, await readRange(storage, c), c.start);
      expect(lines.length).toBe(c.lines);
      expect(c.lines).toBeGreaterThan(0);
      expect(c.lines).toBeLessThanOrEqual(chunkLines);
      expect(lines[0]!.line).toBe(c.firstLine);
      seen.push(...lines);
    }
    expect(seen).toEqual(all);
  }
}

describe('planBatch', () => {
  it('cuts chunks on line boundaries that cover every request exactly once', async () => {
    const lines = [
      sentiment('a', 'good'),
      '',
      sentiment('b', 'é✓ 😀 multi-byte'),
      '   ',
      sentiment('c', 'bad'),
      sentiment('d', 'x'),
      sentiment('e', 'y'),
      '',
      sentiment('f', 'z'),
    ];
    await writeFile(join(dir, 'one.jsonl'), `${lines.join('\r\n')}\r\n\r\n`);
    const { result, chunks } = await plan(uri('one.jsonl'), { chunkLines: 2 });
    expect(result).toMatchObject({ objects: [uri('one.jsonl')], totalLines: 6, invalidLines: 0, duplicateLines: 0 });
    expect(chunks.map((c) => [c.firstLine, c.lines])).toEqual([
      [1, 2],
      [5, 2],
      [7, 2],
    ]);
    expect(result.chunks).toBe(3);
    await checkTiling(chunks, result.objects, 2);
    const data = await readFile(join(dir, 'one.jsonl'));
    expect(result.inputBytes).toBe(data.length);
    expect(result.sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('cuts on chunkBytes too, a longer line making a chunk of its own; no final newline', async () => {
    const lines = Array.from({ length: 20 }, (_, i) => sentiment(`id-${i}`, 'w'.repeat(i * 20)));
    await writeFile(join(dir, 'bytes.jsonl'), lines.join('\n'));
    const { result, chunks } = await plan(uri('bytes.jsonl'), { chunkBytes: 300 });
    expect(result.totalLines).toBe(20);
    await checkTiling(chunks, result.objects, 1000);
    for (const c of chunks) if (c.lines > 1) expect(c.end - c.start).toBeLessThanOrEqual(300);
    expect(chunks.some((c) => c.lines === 1 && c.end - c.start > 300)).toBe(true);
  });

  it('counts invalid lines and records duplicates (first occurrence wins) in their chunk', async () => {
    const lines = [
      sentiment('a', 'one'), // 1
      '{not json', // 2: invalid
      sentiment('b', 'two'), // 3
      sentiment('a', 'again'), // 4: duplicate
      JSON.stringify({ custom_id: 'c', method: 'GET', url: '/v1/infer', body: {} }), // 5: invalid request
      sentiment('c', 'three'), // 6: duplicate of an invalid line's id
      sentiment('b', 'and again'), // 7: duplicate
      'x'.repeat(300), // 8: too long
    ];
    await writeFile(join(dir, 'bad.jsonl'), `${lines.join('\n')}\n`);
    const { result, chunks } = await plan(uri('bad.jsonl'), { chunkLines: 3, maxLineBytes: 200 });
    expect(result).toMatchObject({ totalLines: 8, invalidLines: 3, duplicateLines: 3 });
    expect(chunks.map((c) => c.duplicateLines)).toEqual([[], [4, 6], [7]]);
    await checkTiling(chunks, result.objects, 3);
  });

  it('finds duplicates across the objects of a prefix, taken in lexicographic order', async () => {
    await writeFile(join(dir, 'part-b.jsonl'), `${sentiment('1', 'b')}\n${sentiment('x', 'b')}\n`);
    await writeFile(join(dir, 'part-a.jsonl'), `${sentiment('x', 'a')}\n\n${sentiment('2', 'a')}\n`);
    await writeFile(join(dir, 'part-c.jsonl'), `\n\n`); // no requests: no chunk
    const { result, chunks } = await plan(uri('part-'), { chunkLines: 1 });
    expect(result.objects).toEqual([uri('part-a.jsonl'), uri('part-b.jsonl'), uri('part-c.jsonl')]);
    expect(result).toMatchObject({ totalLines: 4, duplicateLines: 1, chunks: 4 });
    expect(chunks.map((c) => [c.input, c.firstLine, c.duplicateLines])).toEqual([
      [uri('part-a.jsonl'), 1, []],
      [uri('part-a.jsonl'), 3, []],
      [uri('part-b.jsonl'), 1, []],
      [uri('part-b.jsonl'), 2, [2]],
    ]);
    await checkTiling(chunks, result.objects, 1);
    const all = Buffer.concat(await Promise.all(result.objects.map((o) => readFile(new URL(o)))));
    expect(result.sha256).toBe(createHash('sha256').update(all).digest('hex'));
  });

  it('a missing object, or a prefix that matches nothing, is not_found', async () => {
    for (const input of [uri('nothing-here.jsonl'), uri('nothing-here/'), uri('nothing-here')]) {
      const err = await plan(input).catch((e: unknown) => e);
      expect(isStorageError(err, 'not_found')).toBe(true);
      expect((err as Error).message).toContain('nothing-here');
    }
  });

  it('honours the AbortSignal', async () => {
    await writeFile(join(dir, 'abort.jsonl'), `${sentiment('a', 'x')}\n${sentiment('b', 'y')}\n`);
    const ac = new AbortController();
    const err = await planBatch(storage, uri('abort.jsonl'), { ...batch, chunkLines: 1, signal: ac.signal }, () =>
      ac.abort(),
    ).catch((e: unknown) => e);
    expect(isStorageError(err, 'cancelled')).toBe(true);
  });

  const data = join(import.meta.dirname, '../../../../shared/data/sentiment-labelled-sentences');
  it.skipIf(!existsSync(data))('plans the 3,000 labelled sentences as a /v1/infer sentiment batch', async () => {
    const out: string[] = [];
    for (const name of ['amazon_cells_labelled.txt', 'imdb_labelled.txt', 'yelp_labelled.txt']) {
      const text = await readFile(join(data, name), 'utf8');
      text.split('\n').forEach((row, i) => {
        const tab = row.lastIndexOf('\t');
        if (tab === -1) return;
        out.push(sentiment(`${name.split('_')[0]}-${i + 1}`, row.slice(0, tab).trim()));
      });
    }
    expect(out.length).toBe(3000);
    await writeFile(join(dir, 'sentences.jsonl'), `${out.join('\n')}\n`);
    const { result, chunks } = await plan(uri('sentences.jsonl'), { chunkLines: 256 });
    expect(result).toMatchObject({ totalLines: 3000, invalidLines: 0, duplicateLines: 0, chunks: 12 });
    await checkTiling(chunks, result.objects, 256);
    // Each chunk's range parses back into exactly its requests, with the shared validator.
    let ok = 0;
    for (const c of chunks) {
      for (const l of await objectLines(c.input, c.firstLine, await readRange(storage, c))) {
        if (parseBatchLine(l.text ?? '', batch).ok) ok++;
      }
    }
    expect(ok).toBe(3000);
  });

  it('keeps heap growth small over a 200,000-line input', async () => {
    const path = join(dir, 'big.jsonl');
    const rows: string[] = [];
    for (let i = 0; i < 200_000; i++) rows.push(sentiment(`req-${i}`, `sentence number ${i}, which is rather good`));
    await writeFile(path, `${rows.join('\n')}\n`);
    rows.length = 0;
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const before = process.memoryUsage().heapUsed;
    let peak = before;
    let chunks = 0;
    const result = await planBatch(storage, uri('big.jsonl'), { ...batch, chunkLines: 1000 }, () => {
      chunks++;
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    });
    expect(result).toMatchObject({ totalLines: 200_000, invalidLines: 0, duplicateLines: 0, chunks: 200 });
    expect(chunks).toBe(200);
    // The id set is ~4 MiB for 200k ids (off-heap typed array); the rest is short-lived garbage.
    console.log(`heap growth planning 200k lines: ${((peak - before) / 2 ** 20).toFixed(1)} MiB`);
    expect(peak - before).toBeLessThan(40 * 1024 * 1024);
    if (gc) {
      gc();
      // What planning retains (with --expose-gc): nothing but the off-heap id set.
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(8 * 1024 * 1024);
    }
  });
});
