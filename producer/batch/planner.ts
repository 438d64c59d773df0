/**
 * The batch planner: streams a batch's input once and cuts it into chunks,
 * byte ranges of the input objects on line boundaries (principles 1 and 3:
 * nothing of the dataset is kept, and chunks go out as they are cut).
 *
 * - Input: one object, or a prefix naming several (taken in lexicographic
 *   order). A URI that names an existing object is that object alone; else it
 *   is a prefix; a prefix matching nothing is a StorageError `not_found`.
 * - Lines follow the bulk worker's rules (common/batch/line-splitter.ts): LF or CRLF,
 *   the last line may lack its LF, blank lines are numbered but are not
 *   requests. Every non-blank line is a request (`totalLines`), and is
 *   exactly one of: valid, invalid (`invalidLines`: parseBatchLine says so, or
 *   it is longer than `maxLineBytes`), or a duplicate (`duplicateLines`: its
 *   custom_id was seen on an earlier line of the batch, across objects; the
 *   first occurrence wins, valid or not, and the worker reports a duplicate as
 *   such before looking at anything else, as here).
 * - Chunks tile each object: the first starts at byte 0 (firstLine 1), each
 *   next one where the previous ended, the last ends at the object's end, so
 *   the blank lines between two requests belong to the earlier chunk. A chunk
 *   is cut before a request that would take it past `chunkLines` requests or
 *   past `chunkBytes` bytes (a single longer line makes a chunk of its own),
 *   or when it holds the most duplicate line numbers a chunk job may carry.
 *   Chunks never span two objects; an object without requests has no chunk.
 *   `index` runs over the whole batch from 0.
 * - sha256: over the bytes of all objects, in the order of `objects`.
 */
import { createHash } from 'node:crypto';
import { parseBatchLine } from '../../common/batch/parse-line.ts';
import { DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_LINES } from '../../common/config.ts';
import type { BatchEndpoint, Chunk } from '../../common/contracts/batch.ts';
import { isStorageError, parseObjectUri, StorageError, type Storage } from '../../common/storage/index.ts';
import { CustomIdSet } from './custom-id-set.ts';
import { DEFAULT_MAX_LINE_BYTES, splitLines } from '../../common/batch/line-splitter.ts';

/** The most duplicate line numbers one chunk job carries (chunkSchema.duplicateLines' max). */
export const MAX_DUPLICATES_PER_CHUNK = 10_000;

export interface PlanOptions {
  endpoint: BatchEndpoint;
  model: string;
  /** Most requests (non-blank lines) per chunk (default 1000). */
  chunkLines?: number;
  /** Most bytes per chunk, unless one line is longer (default 4 MiB). */
  chunkBytes?: number;
  /** Longer lines are invalid, and never buffered (default 1 MiB). */
  maxLineBytes?: number;
  signal?: AbortSignal;
}

export interface PlanResult {
  /** The input objects, in the order planned. */
  objects: string[];
  /** Requests: non-blank lines, valid or not. */
  totalLines: number;
  /** Lines that cannot run: invalid JSON, an invalid request, or too long. */
  invalidLines: number;
  /** Lines whose custom_id an earlier line already used. */
  duplicateLines: number;
  /** Chunks emitted. */
  chunks: number;
  inputBytes: number;
  /** Hex sha256 of the input bytes (all objects, in order). */
  sha256: string;
}

export type PlanStorage = Pick<Storage, 'stat' | 'read' | 'list'>;

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1: ${value}`);
  return value;
}

function aborted(uri: string, signal: AbortSignal): StorageError {
  return new StorageError('cancelled', `planning ${uri} was aborted`, { uri, cause: signal.reason });
}

/** The objects a batch input URI names: itself if it is an object, else those under it as a prefix. */
export async function resolveInputObjects(
  storage: PlanStorage,
  inputUri: string,
  signal?: AbortSignal,
): Promise<string[]> {
  let isObjectUri = true;
  try {
    parseObjectUri(inputUri);
  } catch (err) {
    if (!isStorageError(err, 'invalid_uri')) throw err;
    isObjectUri = false; // a folder or bucket: a prefix only
  }
  if (isObjectUri) {
    try {
      await storage.stat(inputUri, { signal });
      return [inputUri];
    } catch (err) {
      if (!isStorageError(err, 'not_found')) throw err;
    }
  }
  const objects: string[] = [];
  let pageToken: string | undefined;
  do {
    const page = await storage.list(inputUri, { signal, pageToken });
    for (const item of page.items) objects.push(item.uri);
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);
  if (objects.length === 0) {
    throw new StorageError('not_found', `no input object at ${inputUri} nor under it as a prefix`, { uri: inputUri });
  }
  return objects;
}

/**
 * Plans a batch (see the module comment): `onChunk` gets each chunk as it is
 * cut, in index order, and is awaited before reading on (backpressure).
 */
export async function planBatch(
  storage: PlanStorage,
  inputUri: string,
  opts: PlanOptions,
  onChunk: (chunk: Chunk) => Promise<void> | void,
): Promise<PlanResult> {
  const chunkLines = positiveInt('chunkLines', opts.chunkLines ?? DEFAULT_CHUNK_LINES);
  const chunkBytes = positiveInt('chunkBytes', opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const maxLineBytes = positiveInt('maxLineBytes', opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
  const { signal } = opts;
  const batch = { endpoint: opts.endpoint, model: opts.model };
  if (signal?.aborted) throw aborted(inputUri, signal);

  const objects = await resolveInputObjects(storage, inputUri, signal);
  const sha = createHash('sha256');
  const ids = new CustomIdSet();
  const result: PlanResult = {
    objects,
    totalLines: 0,
    invalidLines: 0,
    duplicateLines: 0,
    chunks: 0,
    inputBytes: 0,
    sha256: '',
  };

  try {
    for (const uri of objects) {
      const stream = await storage.read(uri, { signal });
      let size = 0;
      async function* bytes(): AsyncGenerator<Buffer> {
        for await (const piece of stream as AsyncIterable<Buffer>) {
          if (signal?.aborted) throw aborted(uri, signal);
          sha.update(piece);
          size += piece.length;
          yield piece;
        }
      }
      // The chunk being filled.
      let start = 0;
      let firstLine = 1;
      let lines = 0;
      let duplicates: number[] = [];
      const emit = async (end: number) => {
        const chunk: Chunk = {
          index: result.chunks++,
          input: uri,
          start,
          end,
          firstLine,
          lines,
          duplicateLines: duplicates,
        };
        await onChunk(chunk);
        if (signal?.aborted) throw aborted(uri, signal);
      };
      try {
        for await (const line of splitLines(bytes(), { maxLineBytes })) {
          if (
            lines > 0 &&
            (lines >= chunkLines || line.next - start > chunkBytes || duplicates.length >= MAX_DUPLICATES_PER_CHUNK)
          ) {
            await emit(line.start);
            start = line.start;
            firstLine = line.line;
            lines = 0;
            duplicates = [];
          }
          lines++;
          result.totalLines++;
          if (line.kind === 'too_long') {
            result.invalidLines++;
            continue;
          }
          const parsed = parseBatchLine(line.text, batch);
          if (parsed.customId !== null && !ids.add(parsed.customId)) {
            duplicates.push(line.line);
            result.duplicateLines++;
          } else if (!parsed.ok) {
            result.invalidLines++;
          }
        }
        if (lines > 0) await emit(size);
      } finally {
        if (!stream.destroyed) stream.destroy();
      }
      result.inputBytes += size;
    }
  } finally {
    // Its spill file and filter go now, not whenever a finaliser gets to them.
    ids.close();
  }
  result.sha256 = sha.digest('hex');
  return result;
}
