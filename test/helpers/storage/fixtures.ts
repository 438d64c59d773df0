/**
 * Small builders for the storage conformance suite: bodies, read-back, a
 * deterministic large stream, and a live-memory sampler (with forced GC, so
 * that it measures what the adapter holds, not garbage not yet collected).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect } from 'vitest';
import { listAll, type ListItem, type Storage } from '../../../common/storage/index.ts';
import { isStorageError, type StorageErrorCode } from '../../../common/storage/errors.ts';

export const MiB = 1024 * 1024;

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function readText(storage: Storage, uri: string, range: { start?: number; end?: number } = {}) {
  return (await readAll(await storage.read(uri, range))).toString();
}

export function streamOf(...parts: string[]): Readable {
  return Readable.from(parts.map((p) => Buffer.from(p)));
}

export async function collect(storage: Storage, prefix: string): Promise<ListItem[]> {
  const items: ListItem[] = [];
  for await (const item of listAll(storage, prefix)) items.push(item);
  return items;
}

/** Asserts that `promise` rejects with a StorageError of `code`. */
export async function expectCode(promise: Promise<unknown>, code: StorageErrorCode): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected StorageError ${code}`).toBeDefined();
  if (!isStorageError(err)) throw err;
  expect(err.code).toBe(code);
}

const chunkSize = 256 * 1024;

/** Chunk `i` of a large pattern: its index up front, so a misordered part changes the hash. */
function patternChunk(i: number, size: number): Buffer {
  const chunk = Buffer.alloc(size, i % 251);
  if (size >= 4) chunk.writeUInt32BE(i, 0);
  return chunk;
}

/** A lazily generated stream of `total` bytes; `onChunk` runs before each chunk is produced. */
export function patternStream(total: number, onChunk: (i: number) => void = () => undefined): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0, left = total; left > 0; i++, left -= chunkSize) {
        onChunk(i);
        yield patternChunk(i, Math.min(chunkSize, left));
      }
    })(),
  );
}

export function patternSha256(total: number): string {
  const hash = createHash('sha256');
  for (let i = 0, left = total; left > 0; i++, left -= chunkSize)
    hash.update(patternChunk(i, Math.min(chunkSize, left)));
  return hash.digest('hex');
}

let gc: (() => void) | undefined;
function forceGc(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

/** Live JS heap + ArrayBuffers of this process after a full GC. */
function liveBytes(): number {
  forceGc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Tracks the highest live memory above a baseline taken at creation. */
export class MemoryWatch {
  private readonly baseline = liveBytes();
  private peak = 0;

  sample(): void {
    this.peak = Math.max(this.peak, liveBytes() - this.baseline);
  }

  get peakBytes(): number {
    return this.peak;
  }
}

/** Reads a stream through, hashing it and sampling memory every `every` bytes. */
export async function hashStream(stream: Readable, watch: MemoryWatch, every = 2 * MiB) {
  const hash = createHash('sha256');
  let bytes = 0;
  let nextSample = every;
  let chunks = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    chunks++;
    if (bytes >= nextSample) {
      watch.sample();
      nextSample += every;
    }
  }
  return { sha256: hash.digest('hex'), bytes, chunks };
}
