/**
 * oci:// with OCI's per-service SDK (oci-objectstorage + oci-common).
 * Credentials come from the configured `auth` (config file, instance
 * principal, OKE workload identity, resource principal); the client is built
 * on first use, since principals are fetched over the network.
 *
 * - Create-only writes send `if-none-match: *` (PutObject, and on both
 *   CreateMultipartUpload and CommitMultipartUpload); OCI answers 409
 *   IfNoneMatchFailed when the object exists, and only one commit can win.
 * - A Buffer body is one PutObject. A stream of unknown length is read one
 *   part (`partSizeBytes`) at a time: if it ends within the first part it is
 *   one PutObject, otherwise a multipart upload (OCI's SDK would buffer the
 *   whole stream to learn its length). Parts are sent as streams with SDK
 *   retries off (a consumed stream cannot be resent); a failed upload is
 *   aborted and the job retries it. Memory: up to two parts per upload, as
 *   Node's fetch keeps a sent body referenced until its connection is reused.
 * - OCI has no compose: concat streams the sources, in order, into one
 *   upload of the target (replace), so it costs the bytes' transfer.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import * as common from 'oci-common';
import type { ObjectStorageClient } from 'oci-objectstorage';
import type { OciStorageConfig } from './config.ts';
import { abortable, StorageError } from './errors.ts';
import { alreadyExists, buildClient, mapOciError, sdkDate, statusOf } from './oci-client.ts';
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
import { formatStorageUri, parseObjectUri, parseStorageUri } from './uri.ts';

interface Location {
  namespaceName: string;
  bucketName: string;
  objectName: string;
}

interface Part {
  chunks: Buffer[];
  size: number;
}

/** Splits a stream into parts of exactly `partSize` bytes (the last may be shorter or empty), without copying. */
async function* partsOf(body: Readable, partSize: number): AsyncGenerator<Part, void> {
  let chunks: Buffer[] = [];
  let size = 0;
  for await (const raw of body as AsyncIterable<Buffer | string>) {
    let chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    while (size + chunk.length >= partSize) {
      chunks.push(chunk.subarray(0, partSize - size));
      chunk = chunk.subarray(partSize - size);
      yield { chunks, size: partSize };
      chunks = [];
      size = 0;
    }
    if (chunk.length > 0) chunks.push(chunk);
    size += chunk.length;
  }
  yield { chunks, size };
}

export interface OciStorageDeps {
  /** Signs requests instead of `config.auth` (tests: a SimpleAuthenticationDetailsProvider). */
  authProvider?: common.AuthenticationDetailsProvider;
}

export function createOciStorage(config: OciStorageConfig, deps: OciStorageDeps = {}): Storage {
  let clientPromise: Promise<ObjectStorageClient> | undefined;
  const client = () =>
    (clientPromise ??= buildClient(config, deps.authProvider).catch((err: unknown) => {
      clientPromise = undefined; // let a later call try again (a principal's endpoint may have been down)
      throw err;
    }));

  function locate(uri: string, object = true): Location {
    const parsed = object ? parseObjectUri(uri) : parseStorageUri(uri);
    if (parsed.scheme !== 'oci') throw new StorageError('invalid_uri', `OCI storage cannot serve ${uri}`, { uri });
    return { namespaceName: parsed.namespace, bucketName: parsed.bucket, objectName: parsed.key };
  }

  async function run<T>(uri: string, signal: AbortSignal | undefined, call: (c: ObjectStorageClient) => Promise<T>) {
    try {
      return await abortable(uri, signal, async () => call(await client()));
    } catch (err) {
      throw mapOciError(err, uri, signal);
    }
  }

  async function stat(uri: string, signal?: AbortSignal): Promise<StorageObject> {
    const head = await run(uri, signal, (c) => c.headObject(locate(uri)));
    const updatedAt = sdkDate(head.lastModified);
    return { uri, size: Number(head.contentLength), etag: head.eTag, ...(updatedAt ? { updatedAt } : {}) };
  }

  /** Uploads `body` to `uri`; with `ifAbsent`, false when the object already existed. */
  async function upload(uri: string, body: Buffer | Readable, ifAbsent: boolean, opts: WriteOptions) {
    const ifNoneMatch = ifAbsent ? '*' : undefined;
    const contentType = opts.contentType ?? 'application/octet-stream';
    const onAbort = () => (Buffer.isBuffer(body) ? undefined : body.destroy());
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await run(uri, opts.signal, async (c) => {
        const loc = locate(uri);
        const put = (data: Buffer) =>
          c.putObject({ ...loc, putObjectBody: data, contentLength: data.length, ifNoneMatch, contentType });
        if (Buffer.isBuffer(body)) return void (await put(body));
        const parts = partsOf(body, config.partSizeBytes);
        const first = await parts.next();
        let part: Part = first.done ? { chunks: [], size: 0 } : first.value;
        if (part.size < config.partSizeBytes) return void (await put(Buffer.concat(part.chunks)));
        const details = { object: loc.objectName, contentType };
        const created = await c.createMultipartUpload({ ...loc, createMultipartUploadDetails: details, ifNoneMatch });
        const uploadId = created.multipartUpload.uploadId;
        try {
          const partsToCommit: { partNum: number; etag: string }[] = [];
          for (let partNum = 1; part.size > 0; partNum++) {
            const sent = await c.uploadPart({
              ...loc,
              uploadId,
              uploadPartNum: partNum,
              uploadPartBody: Readable.from(part.chunks),
              contentLength: part.size,
              retryConfiguration: common.NoRetryConfigurationDetails,
            });
            partsToCommit.push({ partNum, etag: sent.eTag });
            part.chunks.length = 0; // sent: let it go before the next part is read in
            const next = await parts.next();
            part = next.done ? { chunks: [], size: 0 } : next.value;
          }
          await c.commitMultipartUpload({
            ...loc,
            uploadId,
            commitMultipartUploadDetails: { partsToCommit },
            ifNoneMatch,
          });
        } catch (err) {
          await c.abortMultipartUpload({ ...loc, uploadId }).catch(() => undefined);
          throw err;
        }
      }).then(() => true);
    } catch (err) {
      if (ifAbsent && alreadyExists((err as StorageError).cause)) return false;
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      if (!Buffer.isBuffer(body) && !body.readableEnded) body.destroy();
    }
  }

  async function openRead(uri: string, start: number, end: number | undefined, signal?: AbortSignal) {
    // The SDK sends a range only as common.Range (a plain string is ignored); an end past the object is clipped (RFC 9110).
    const range =
      start > 0 || end !== undefined ? new common.Range(start, (end ?? Number.MAX_SAFE_INTEGER) - 1, null) : undefined;
    try {
      const got = await run(uri, signal, (c) => c.getObject({ ...locate(uri), ...(range ? { range } : {}) }));
      const value = got.value;
      const stream = value instanceof Readable ? value : Readable.fromWeb(value as WebReadableStream);
      return guardStream(stream, uri, (err) => mapOciError(err, uri), signal);
    } catch (err) {
      if (statusOf((err as StorageError).cause) === 416) return emptyStream();
      throw err;
    }
  }

  return {
    stat: (uri, opts: CallOptions = {}) => stat(uri, opts.signal),

    async read(uri, opts: ReadOptions = {}) {
      const { start, end } = checkRange(opts);
      if (end !== start) return openRead(uri, start, end, opts.signal);
      await stat(uri, opts.signal); // still reject a missing object
      return emptyStream();
    },

    async writeIfAbsent(uri, body, opts = {}) {
      return { created: await upload(uri, body, true, opts) };
    },

    async list(prefixUri, opts = {}) {
      const { namespaceName, bucketName, objectName: prefix } = locate(prefixUri, false);
      const limit = clampPageSize(opts.pageSize);
      const { listObjects } = await run(prefixUri, opts.signal, (c) =>
        c.listObjects({ namespaceName, bucketName, prefix, start: opts.pageToken, limit, fields: 'name,size' }),
      );
      const items = listObjects.objects.map((o) => ({
        uri: formatStorageUri({ scheme: 'oci', namespace: namespaceName, bucket: bucketName, key: o.name }),
        size: Number(o.size ?? 0),
      }));
      return listObjects.nextStartWith ? { items, nextPageToken: listObjects.nextStartWith } : { items };
    },

    async concat(targetUri, sourceUris, opts: WriteOptions = {}) {
      sourceUris.forEach((uri) => locate(uri));
      const read = (uri: string) => openRead(uri, 0, undefined, opts.signal);
      async function* bytes() {
        for (const uri of sourceUris) yield* await read(uri);
      }
      await upload(targetUri, Readable.from(bytes()), false, opts);
      return stat(targetUri, opts.signal);
    },

    async delete(uri, opts: CallOptions = {}) {
      try {
        await run(uri, opts.signal, (c) => c.deleteObject(locate(uri)));
      } catch (err) {
        if (!(err instanceof StorageError && err.code === 'not_found')) throw err;
      }
    },
  };
}
