/**
 * The storage seam: one small interface over file://, gs:// and oci://, so
 * batch planning (producer) and bulk workers (gpu-worker) read byte ranges of
 * their inputs and write output parts without knowing the cloud.
 *
 * Contracts every adapter keeps (test/helpers/storage/conformance.ts checks
 * them against each one):
 * - Ranges are half-open, like Buffer#subarray: `{ start, end }` reads bytes
 *   start..end-1, so a planner tiles an object as [0,a), [a,b), [b,size)
 *   with no ±1. A range reaching past the end is clipped; one starting at or
 *   past the end reads nothing (no error).
 * - `writeIfAbsent` is create-only and atomic against concurrent writers:
 *   exactly one of them gets `{ created: true }`; the object, once there, is
 *   never replaced (principle 2: a re-run chunk neither overwrites nor
 *   duplicates its part). A Readable body is consumed or destroyed.
 * - `concat` replaces the target atomically with the sources' bytes in
 *   order (finalisation re-run writes the identical object again).
 * - `list` pages are in lexicographic (byte) order of object name; the page
 *   token is opaque, and a cursor worth keeping in Redis.
 * - `delete` of a missing object succeeds.
 * - Streams are streamed: memory stays bounded by a part, never the object.
 * - Failures are StorageError with a stable code (./errors.ts); an aborted
 *   signal rejects with code `cancelled`.
 */
import { PassThrough, Readable } from 'node:stream';
import { cancelled, type StorageError } from './errors.ts';

export interface CallOptions {
  signal?: AbortSignal;
}

export interface ReadOptions extends CallOptions {
  /** First byte to read (default 0). */
  start?: number;
  /** One past the last byte to read (exclusive; default: the object's end). */
  end?: number;
}

export interface WriteOptions extends CallOptions {
  /** Stored as the object's content type where the backend keeps one. */
  contentType?: string;
}

export interface ListOptions extends CallOptions {
  /** A token from a previous page's `nextPageToken`. */
  pageToken?: string;
  /** Most items in one page (default and maximum 1000). */
  pageSize?: number;
}

export interface StorageObject {
  uri: string;
  size: number;
  /** Changes whenever the object is replaced: a GCS generation, an OCI ETag, a file's inode+mtime. */
  etag: string;
  updatedAt?: Date;
}

export interface ListItem {
  uri: string;
  size: number;
}

export interface ListPage {
  items: ListItem[];
  /** Absent on the last page. */
  nextPageToken?: string;
}

export interface WriteResult {
  /** false: an object was already there and was left untouched. */
  created: boolean;
}

export interface Storage {
  stat(uri: string, opts?: CallOptions): Promise<StorageObject>;
  /** Resolves once the backend has answered (a missing object rejects here, not on the stream). */
  read(uri: string, opts?: ReadOptions): Promise<Readable>;
  writeIfAbsent(uri: string, body: Buffer | Readable, opts?: WriteOptions): Promise<WriteResult>;
  list(prefixUri: string, opts?: ListOptions): Promise<ListPage>;
  concat(targetUri: string, sourceUris: readonly string[], opts?: WriteOptions): Promise<StorageObject>;
  delete(uri: string, opts?: CallOptions): Promise<void>;
}

export const maxPageSize = 1000;

/** Every item under a prefix, page after page (memory: one page). */
export async function* listAll(storage: Storage, prefixUri: string, opts: CallOptions = {}): AsyncGenerator<ListItem> {
  let pageToken: string | undefined;
  do {
    const page = await storage.list(prefixUri, { ...opts, pageToken });
    yield* page.items;
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);
}

/** A checked range: `end` undefined means "to the object's end". */
export interface ByteRange {
  start: number;
  end: number | undefined;
}

/** Validates a read range; a misuse is a bug in the caller, hence RangeError. */
export function checkRange(opts: ReadOptions): ByteRange {
  const start = opts.start ?? 0;
  const end = opts.end;
  if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`read start must be an integer >= 0: ${start}`);
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
    throw new RangeError(`read end must be an integer >= start (${start}): ${end}`);
  }
  return { start, end };
}

export function emptyStream(): Readable {
  return Readable.from([]);
}

export function clampPageSize(pageSize: number | undefined): number {
  if (pageSize === undefined) return maxPageSize;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) throw new RangeError(`pageSize must be >= 1: ${pageSize}`);
  return Math.min(pageSize, maxPageSize);
}

/**
 * Hands out an SDK's or fs's stream so that its failures reach the caller as
 * StorageError, the signal aborts it, and a consumer that stops early
 * (destroys the result) releases the source and its connection.
 */
export function guardStream(
  source: Readable,
  uri: string,
  mapError: (err: unknown) => StorageError,
  signal?: AbortSignal,
): Readable {
  const out = new PassThrough();
  const onAbort = () => out.destroy(cancelled(uri, signal!));
  source.on('error', (err) => out.destroy(mapError(err)));
  out.once('close', () => {
    signal?.removeEventListener('abort', onAbort);
    if (!source.destroyed) source.destroy();
  });
  source.pipe(out);
  // An abort may land before anyone reads: readers still get the error through their own
  // listeners (async iteration, pipeline); this one only keeps it from crashing the process.
  out.on('error', () => undefined);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return out;
}
