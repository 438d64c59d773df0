/**
 * A local stand-in for the slice of the Cloud Storage JSON API that the gs://
 * adapter uses, for the real @google-cloud/storage client to talk to
 * (apiEndpoint http://127.0.0.1:<port>, no auth). In memory, plain node:http.
 *
 * Implements: objects.get (metadata, and alt=media with Range → 206/416),
 * objects.insert (uploadType=multipart and media; resumable answers 501),
 * objects.list (prefix, maxResults ≤ 1000, pageToken), objects.compose
 * (1..32 sources, same bucket), objects.delete.
 * Enforces: ifGenerationMatch on insert, compose and delete (0 = must not
 * exist → 412 conditionNotMet), the 32-source compose limit, unknown buckets
 * (404), denied buckets (403). Returns crc32c/md5 like GCS, because the
 * client checks them after an upload and deletes the object on a mismatch.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CRC32C } from '@google-cloud/storage';
import { MemoryStore, readBody, sendJson, sendMedia, type StandInOptions, type StoredObject } from './memory-store.ts';

export interface StandInServer {
  url: string;
  store: MemoryStore;
  close(): Promise<void>;
}

const crcCache = new WeakMap<StoredObject, string>();
function crc32c(obj: StoredObject): string {
  let crc = crcCache.get(obj);
  if (crc === undefined) {
    const hash = new CRC32C();
    hash.update(obj.data);
    crcCache.set(obj, (crc = hash.toString()));
  }
  return crc;
}

function metadata(bucket: string, o: StoredObject) {
  return {
    kind: 'storage#object',
    id: `${bucket}/${o.name}/${o.generation}`,
    name: o.name,
    bucket,
    generation: String(o.generation),
    metageneration: '1',
    contentType: o.contentType,
    size: String(o.data.length),
    md5Hash: o.md5.toString('base64'),
    crc32c: crc32c(o),
    etag: o.etag,
    timeCreated: o.updated.toISOString(),
    updated: o.updated.toISOString(),
    storageClass: 'STANDARD',
  };
}

class GcsFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** multipart/related → [metadata JSON, media bytes], as the client's simple upload sends them. */
function parseMultipart(body: Buffer, contentType: string): { meta: Record<string, unknown>; data: Buffer } {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) throw new GcsFailure(400, 'invalid', 'multipart upload without a boundary');
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const framed = Buffer.concat([Buffer.from('\r\n'), body]);
  const parts: Buffer[] = [];
  for (let at = framed.indexOf(delimiter); at !== -1;) {
    const start = at + delimiter.length;
    if (framed.subarray(start, start + 2).toString() === '--') break;
    const next = framed.indexOf(delimiter, start);
    if (next === -1) break;
    const part = framed.subarray(start + 2, next);
    parts.push(part.subarray(part.indexOf('\r\n\r\n') + 4));
    at = next;
  }
  if (parts.length !== 2) throw new GcsFailure(400, 'invalid', `expected 2 multipart parts, got ${parts.length}`);
  return { meta: JSON.parse(parts[0]!.toString()) as Record<string, unknown>, data: parts[1]! };
}

function checkGeneration(query: URLSearchParams, current: StoredObject | undefined): void {
  const want = query.get('ifGenerationMatch');
  if (want !== null && want !== String(current?.generation ?? 0)) {
    throw new GcsFailure(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
  }
}

export async function startGcsServer(options: StandInOptions): Promise<StandInServer> {
  const store = new MemoryStore(options.buckets);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const q = url.searchParams;
    // Object names arrive as one %-encoded segment (slashes as %2F).
    const m = /^\/(upload\/)?storage\/v1\/b\/([^/]+)\/o(?:\/([^/]+))?(\/compose)?$/.exec(url.pathname);
    if (!m) throw new GcsFailure(404, 'notFound', `no such route: ${req.method} ${url.pathname}`);
    const [, upload, bucket = '', rawName, compose] = m;
    const name = rawName === undefined ? undefined : decodeURIComponent(rawName);
    if (store.isDenied(bucket)) {
      throw new GcsFailure(403, 'forbidden', `caller does not have storage.objects access to bucket ${bucket}.`);
    }
    if (!store.hasBucket(bucket)) throw new GcsFailure(404, 'notFound', 'The specified bucket does not exist.');

    if (upload && req.method === 'POST') {
      store.count('insert');
      const type = q.get('uploadType');
      if (type === 'resumable') throw new GcsFailure(501, 'notImplemented', 'stand-in: resumable uploads');
      const body = await readBody(req);
      const { meta, data } =
        type === 'multipart' ? parseMultipart(body, req.headers['content-type'] ?? '') : { meta: {}, data: body };
      const objectName = q.get('name') ?? (meta.name as string | undefined);
      if (!objectName) throw new GcsFailure(400, 'required', 'object name required');
      checkGeneration(q, store.get(bucket, objectName)); // after the body: the last writer to finish is checked
      const contentType = (meta.contentType as string | undefined) ?? req.headers['content-type'];
      return sendJson(res, 200, metadata(bucket, store.put(bucket, objectName, data, contentType)));
    }
    if (name === undefined && req.method === 'GET') {
      store.count('list');
      const limit = Math.min(Number(q.get('maxResults') ?? 1000) || 1000, 1000);
      const token = q.get('pageToken');
      const after = token ? Buffer.from(token, 'base64url').toString() : undefined;
      const { objects, next } = store.list(bucket, q.get('prefix') ?? '', limit, { after });
      const last = objects[objects.length - 1];
      const nextPageToken = next !== undefined && last ? Buffer.from(last.name).toString('base64url') : undefined;
      return sendJson(res, 200, {
        kind: 'storage#objects',
        items: objects.map((o) => metadata(bucket, o)),
        nextPageToken,
      });
    }
    if (name !== undefined && compose && req.method === 'POST') {
      store.count('compose');
      const spec = JSON.parse((await readBody(req)).toString()) as {
        sourceObjects?: { name: string; generation?: number }[];
        destination?: { contentType?: string };
      };
      const sources = spec.sourceObjects ?? [];
      if (sources.length < 1 || sources.length > 32) {
        throw new GcsFailure(
          400,
          'invalid',
          `The number of source components provided (${sources.length}) must be 1..32`,
        );
      }
      const parts = sources.map((s) => {
        const obj = store.get(bucket, s.name);
        if (!obj || (s.generation !== undefined && s.generation !== obj.generation)) {
          throw new GcsFailure(404, 'notFound', `Object ${s.name} (source of compose) not found`);
        }
        return obj.data;
      });
      checkGeneration(q, store.get(bucket, name));
      const obj = store.put(bucket, name, Buffer.concat(parts), spec.destination?.contentType);
      return sendJson(res, 200, metadata(bucket, obj));
    }
    if (name === undefined) throw new GcsFailure(404, 'notFound', `no such route: ${req.method} ${url.pathname}`);
    const obj = store.get(bucket, name);
    if (req.method === 'DELETE') {
      store.count('delete');
      if (!obj) throw new GcsFailure(404, 'notFound', `No such object: ${bucket}/${name}`);
      checkGeneration(q, obj);
      store.delete(bucket, name);
      res.writeHead(204).end();
      return;
    }
    if (req.method !== 'GET') throw new GcsFailure(405, 'notAllowed', `${req.method} not supported`);
    if (!obj) throw new GcsFailure(404, 'notFound', `No such object: ${bucket}/${name}`);
    if (q.get('alt') !== 'media') {
      store.count('get');
      return sendJson(res, 200, metadata(bucket, obj));
    }
    store.count(req.headers.range ? 'media-range' : 'media');
    const headers = {
      'x-goog-generation': String(obj.generation),
      'x-goog-hash': `crc32c=${crc32c(obj)},md5=${obj.md5.toString('base64')}`,
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': String(obj.data.length),
      etag: obj.etag,
    };
    sendMedia(req, res, obj, headers, () => {
      throw new GcsFailure(416, 'requestedRangeNotSatisfiable', 'The requested range cannot be satisfied.');
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const failure = err instanceof GcsFailure ? err : new GcsFailure(500, 'backendError', String(err));
      if (res.headersSent) return void res.destroy();
      req.resume(); // drain an unread upload body so the client sees the answer
      const { status, reason, message } = failure;
      sendJson(res, status, { error: { code: status, message, errors: [{ domain: 'global', reason, message }] } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    store,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
