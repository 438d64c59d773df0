/**
 * gs:// with @google-cloud/storage (JSON API). Credentials: Application
 * Default Credentials — GKE Workload Identity in the cluster, a key file or
 * gcloud login elsewhere.
 *
 * - Create-only writes are one `uploadType=multipart` request with
 *   `ifGenerationMatch=0`: GCS answers 412 if the object exists, atomically.
 *   Not resumable on purpose: output parts are one chunk's results, and a
 *   failed upload is retried whole by the job (a resumable session would
 *   leave state behind for nothing).
 * - concat uses compose, which takes at most 32 sources and only from the
 *   target's bucket: longer lists are composed in rounds into temporaries
 *   named `<target>.concat-<random>/<round>-<n>`, deleted afterwards.
 * - Ranged reads need objects stored without `Content-Encoding: gzip`
 *   (GCS serves those whole); batch inputs are uploaded plain.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Storage as GcsClient, type File } from '@google-cloud/storage';
import type { GcsStorageConfig } from './config.ts';
import { abortable, cancelled, codeForHttpStatus, isNetworkError, StorageError } from './errors.ts';
import {
  checkRange,
  clampPageSize,
  emptyStream,
  guardStream,
  type CallOptions,
  type ReadOptions,
  type Storage,
  type StorageObject,
  type WriteOptions,
} from './storage.ts';
import { parseObjectUri, parseStorageUri } from './uri.ts';

export const gcsComposeLimit = 32;
const composeConcurrency = 8;

const statusOf = (err: unknown): number | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
};

/** The service's own message: a failed download carries the raw JSON error body as its message. */
function messageOf(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  try {
    return (JSON.parse(raw) as { error?: { message?: string } }).error?.message ?? raw;
  } catch {
    return raw;
  }
}

function mapGcsError(err: unknown, uri: string, signal?: AbortSignal): StorageError {
  if (err instanceof StorageError) return err;
  if (signal?.aborted) return cancelled(uri, signal);
  const message = `${uri}: ${messageOf(err)}`;
  const status = statusOf(err);
  if (status !== undefined) return new StorageError(codeForHttpStatus(status), message, { uri, cause: err });
  const code = isNetworkError(err) ? 'unavailable' : 'internal';
  return new StorageError(code, message, { uri, cause: err });
}

export interface GcsStorageDeps {
  /** A ready client (tests, or a caller sharing one). */
  client?: GcsClient;
}

export function createGcsStorage(config: GcsStorageConfig, deps: GcsStorageDeps = {}): Storage {
  const client =
    deps.client ??
    new GcsClient({
      ...(config.projectId ? { projectId: config.projectId } : {}),
      ...(config.apiEndpoint ? { apiEndpoint: config.apiEndpoint } : {}),
      // The client skips auth on a custom endpoint unless told otherwise.
      useAuthWithCustomEndpoint: config.auth === 'adc',
    });

  function locate(uri: string, object = true): { bucket: string; key: string } {
    const parsed = object ? parseObjectUri(uri) : parseStorageUri(uri);
    if (parsed.scheme !== 'gs') throw new StorageError('invalid_uri', `GCS storage cannot serve ${uri}`, { uri });
    return parsed;
  }
  const fileOf = (uri: string): File => {
    const { bucket, key } = locate(uri);
    return client.bucket(bucket).file(key);
  };

  async function run<T>(uri: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    try {
      return await abortable(uri, signal, call);
    } catch (err) {
      throw mapGcsError(err, uri, signal);
    }
  }

  async function stat(uri: string, signal?: AbortSignal): Promise<StorageObject> {
    const [meta] = await run(uri, signal, () => fileOf(uri).getMetadata());
    const updatedAt = meta.updated ? new Date(meta.updated) : undefined;
    return { uri, size: Number(meta.size ?? 0), etag: String(meta.generation), ...(updatedAt ? { updatedAt } : {}) };
  }

  /** Starts the download and waits for the response, so a missing object rejects here. */
  function openRead(uri: string, file: File, start: number, end: number | undefined, signal?: AbortSignal) {
    // Ranged reads skip integrity checks (the client cannot hash a part); full reads keep crc32c.
    const stream = file.createReadStream({
      ...(start > 0 ? { start } : {}),
      ...(end !== undefined ? { end: end - 1 } : {}),
    });
    return new Promise<Readable>((resolve, reject) => {
      const settle = (outcome: () => void) => {
        stream.off('error', onError).off('response', onResponse);
        signal?.removeEventListener('abort', onAbort);
        outcome();
      };
      const fail = (err: StorageError) => {
        stream.on('error', () => undefined).destroy();
        reject(err);
      };
      const onError = (err: unknown) =>
        settle(() => (statusOf(err) === 416 ? resolve(emptyStream()) : fail(mapGcsError(err, uri))));
      const onResponse = (res: { statusCode?: number }) => {
        // An error status is followed by 'error' carrying the service's message.
        if ((res.statusCode ?? 500) < 300)
          settle(() => resolve(guardStream(stream, uri, (e) => mapGcsError(e, uri), signal)));
      };
      const onAbort = () => settle(() => fail(cancelled(uri, signal!)));
      stream.on('error', onError).on('response', onResponse);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.read(0); // the client sends the request on the first read
    });
  }

  async function compose(bucket: string, names: string[], target: string, ifAbsent: boolean, contentType?: string) {
    const dest = client.bucket(bucket).file(target);
    if (contentType) dest.metadata.contentType = contentType;
    await client.bucket(bucket).combine(names, dest, ifAbsent ? { ifGenerationMatch: 0 } : {});
  }

  return {
    stat: (uri, opts: CallOptions = {}) => stat(uri, opts.signal),

    async read(uri, opts: ReadOptions = {}) {
      const { start, end } = checkRange(opts);
      if (end === start) {
        await stat(uri, opts.signal); // still reject a missing object
        return emptyStream();
      }
      return openRead(uri, fileOf(uri), start, end, opts.signal);
    },

    async writeIfAbsent(uri, body, opts: WriteOptions = {}) {
      const { signal } = opts;
      const options = {
        resumable: false,
        preconditionOpts: { ifGenerationMatch: 0 },
        metadata: { contentType: opts.contentType ?? 'application/octet-stream' },
      };
      try {
        const file = fileOf(uri);
        if (Buffer.isBuffer(body)) await abortable(uri, signal, () => file.save(body, options));
        else await pipeline(body, file.createWriteStream(options), { signal });
        return { created: true };
      } catch (err) {
        if (statusOf(err) === 412) return { created: false };
        throw mapGcsError(err, uri, signal);
      } finally {
        if (!Buffer.isBuffer(body) && !body.readableEnded) body.destroy();
      }
    },

    async list(prefixUri, opts = {}) {
      const { bucket, key } = locate(prefixUri, false);
      const maxResults = clampPageSize(opts.pageSize);
      const [files, next] = await run(prefixUri, opts.signal, () =>
        client.bucket(bucket).getFiles({ prefix: key, maxResults, pageToken: opts.pageToken, autoPaginate: false }),
      );
      const items = files.map((f) => ({ uri: `gs://${bucket}/${f.name}`, size: Number(f.metadata.size ?? 0) }));
      const nextPageToken = (next as { pageToken?: string } | null)?.pageToken;
      return nextPageToken ? { items, nextPageToken } : { items };
    },

    async concat(targetUri, sourceUris, opts: WriteOptions = {}) {
      const target = locate(targetUri);
      let names = sourceUris.map((uri) => {
        const source = locate(uri);
        if (source.bucket !== target.bucket) {
          throw new StorageError('invalid_uri', `GCS compose needs ${uri} in the bucket of ${targetUri}`, { uri });
        }
        return source.key;
      });
      const temps: string[] = [];
      await run(targetUri, opts.signal, async () => {
        if (names.length === 0) {
          await client.bucket(target.bucket).file(target.key).save(Buffer.alloc(0), { resumable: false });
          return;
        }
        const tempBase = `${target.key}.concat-${randomBytes(6).toString('hex')}/`;
        try {
          for (let round = 0; names.length > gcsComposeLimit; round++) {
            const groups: string[][] = [];
            for (let i = 0; i < names.length; i += gcsComposeLimit) groups.push(names.slice(i, i + gcsComposeLimit));
            const next = groups.map((_, i) => `${tempBase}${round}-${i}`);
            temps.push(...next);
            for (let i = 0; i < groups.length; i += composeConcurrency) {
              const batch = groups.slice(i, i + composeConcurrency);
              await Promise.all(batch.map((group, j) => compose(target.bucket, group, next[i + j]!, true)));
            }
            names = next;
          }
          await compose(target.bucket, names, target.key, false, opts.contentType);
        } finally {
          const bucket = client.bucket(target.bucket);
          await Promise.all(
            temps.map((t) =>
              bucket
                .file(t)
                .delete({ ignoreNotFound: true })
                .catch(() => undefined),
            ),
          );
        }
      });
      return stat(targetUri, opts.signal);
    },

    async delete(uri, opts: CallOptions = {}) {
      await run(uri, opts.signal, () => fileOf(uri).delete({ ignoreNotFound: true }));
    },
  };
}
