/**
 * The training runner's storage side (gpu-worker/training/rank-files.ts) on
 * real files through the file:// backend: line shards are disjoint and cover
 * every line for any split, small reads included; object shards deal objects
 * round robin; prefixes are pulled with their paths; uploads are create-only.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileStorage, type Storage } from '../../../common/storage/index.ts';
import {
  byteRange,
  makeRankDirs,
  pullPrefix,
  pullShard,
  pushDir,
  removeRankDirs,
} from '../../../gpu-worker/training/rank-files.ts';

let dir: string;
const url = (p: string): string => pathToFileURL(p).href;
const fileStorage = createFileStorage();

/** The file storage, its reads cut into chunks of `size` bytes (line boundaries fall inside and across chunks). */
function chunked(size: number): Storage {
  return {
    ...fileStorage,
    read: async (uri, opts) => {
      const all: Buffer[] = [];
      for await (const c of await fileStorage.read(uri, opts)) all.push(c as Buffer);
      const buf = Buffer.concat(all);
      const parts: Buffer[] = [];
      for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
      return Readable.from(parts);
    },
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-rank-files-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function shardText(storage: Storage, uris: string[], shard: 'lines' | 'objects', rank: number, n: number) {
  const out = await mkdtemp(join(dir, 'shard-'));
  const r = await pullShard(storage, { uris, shard }, rank, n, out);
  const names = (await readdir(out)).sort();
  const texts = await Promise.all(names.map((f) => readFile(join(out, f), 'utf8')));
  return { ...r, names, text: texts.join('') };
}

describe('byteRange', () => {
  it('splits a size into contiguous ranges that cover it', () => {
    const ranges = [0, 1, 2].map((k) => byteRange(10, k, 3));
    expect(ranges).toEqual([
      { start: 0, end: 3 },
      { start: 3, end: 6 },
      { start: 6, end: 10 },
    ]);
  });
});

describe('pullShard', () => {
  it('lines: every line lands in exactly one rank, in order, for many splits and read sizes', async () => {
    const lines = Array.from({ length: 57 }, (_, i) => `line ${i} ${'x'.repeat(i % 13)}`);
    const file = join(dir, 'corpus.txt');
    await writeFile(file, `${lines.join('\n')}\n`);
    const noNewlineAtEnd = join(dir, 'tail.txt');
    await writeFile(noNewlineAtEnd, 'a\nbb\nccc');
    for (const n of [1, 2, 3, 7, 60]) {
      for (const size of [1, 5, 64, 1 << 16]) {
        const storage = chunked(size);
        const parts: string[] = [];
        for (let k = 0; k < n; k++) parts.push((await shardText(storage, [url(file)], 'lines', k, n)).text);
        expect(parts.join(''), `n=${n} read=${size}`).toBe(`${lines.join('\n')}\n`);
        const tails: string[] = [];
        for (let k = 0; k < n; k++) tails.push((await shardText(storage, [url(noNewlineAtEnd)], 'lines', k, n)).text);
        expect(tails.join(''), `tail n=${n} read=${size}`).toBe('a\nbb\nccc');
      }
    }
  });

  it('objects: rank k gets every n-th object under the prefixes, in URI order', async () => {
    const data = join(dir, 'objs');
    await mkdir(join(data, 'sub'), { recursive: true });
    for (const name of ['a.txt', 'b.txt', 'c.txt', 'sub/d.txt']) await writeFile(join(data, name), `${name}\n`);
    const r0 = await shardText(fileStorage, [`${url(data)}/`], 'objects', 0, 2);
    const r1 = await shardText(fileStorage, [`${url(data)}/`], 'objects', 1, 2);
    expect(r0.text).toBe('a.txt\nc.txt\n');
    expect(r1.text).toBe('b.txt\nsub/d.txt\n');
    expect(r0.names).toEqual(['00000-a.txt', '00002-c.txt']);
  });

  it('names what is missing when the data has no objects', async () => {
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await expect(shardText(fileStorage, [`${url(empty)}/`], 'lines', 0, 1)).rejects.toThrow(/no data objects under/);
  });
});

describe('pullPrefix and pushDir', () => {
  it('pulls a prefix with its paths; uploads create-only and says what was already there', async () => {
    const dirs = await makeRankDirs('train_x-r1-k0', dir);
    await mkdir(join(dirs.output, 'nested'), { recursive: true });
    await writeFile(join(dirs.output, 'model.json'), '{"v":1}');
    await writeFile(join(dirs.output, 'nested', 'w.f32'), Buffer.from([1, 2, 3, 4]));
    const prefix = `${url(join(dir, 'ckpt'))}/round-1/rank-0/`;
    expect(await pushDir(fileStorage, dirs.output, prefix)).toEqual({ created: 2, existing: 0 });
    await writeFile(join(dirs.output, 'model.json'), '{"v":2}');
    expect(await pushDir(fileStorage, dirs.output, prefix)).toEqual({ created: 0, existing: 2 });

    const back = await makeRankDirs('train_x-r2-k0', dir);
    expect(await pullPrefix(fileStorage, prefix, back.init)).toBe(2);
    expect(await readFile(join(back.init, 'model.json'), 'utf8')).toBe('{"v":1}');
    expect([...(await readFile(join(back.init, 'nested', 'w.f32')))]).toEqual([1, 2, 3, 4]);
    await removeRankDirs(dirs);
    await removeRankDirs(back);
    await expect(readdir(dirs.work)).rejects.toThrow();
  });
});
