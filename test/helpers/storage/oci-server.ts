/**
 * A local stand-in for the slice of OCI Object Storage's REST API that the
 * oci:// adapter uses, for the real oci-objectstorage client to talk to
 * (client.endpoint = http://127.0.0.1:<port>). In memory, plain node:http.
 *
 * Implements: HeadObject, GetObject (Range → 206/416), PutObject, DeleteObject,
 * ListObjects (prefix, start, startAfter, limit, fields=name,size,
 * nextStartWith), CreateMultipartUpload, UploadPart, CommitMultipartUpload,
 * AbortMultipartUpload.
 * Enforces: request signatures (OCI's draft-cavage HTTP signature, verified
 * against the test's public key; x-content-sha256 of signed bodies); the
 * Content-Length that PutObject and UploadPart require; `if-none-match: *`
 * (409 IfNoneMatchFailed) and `if-match` (412) on PutObject, create and
 * commit of multipart uploads; a minimum size for every part but the last;
 * unknown buckets (404 BucketNotFound); denied buckets (403).
 */
import { createHash, createVerify, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StandInServer } from './gcs-server.ts';
import { MemoryStore, readBody, sendJson, sendMedia, type StandInOptions, type StoredObject } from './memory-store.ts';

class OciFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Upload {
  bucket: string;
  object: string;
  contentType: string;
  parts: Map<number, { data: Buffer; etag: string }>;
}

/** Checks the Authorization header the SDK's signer writes (keyId, algorithm, headers, signature). */
function verifySignature(req: IncomingMessage, publicKeyPem: string | undefined, body: Buffer | undefined): void {
  const auth = req.headers.authorization ?? '';
  const fields: Record<string, string | undefined> = Object.fromEntries(
    [...auth.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
  );
  if (!auth.startsWith('Signature ') || !fields.keyId || !fields.signature || !fields.headers) {
    throw new OciFailure(
      401,
      'NotAuthenticated',
      'The required information to complete authentication was not provided.',
    );
  }
  if (!publicKeyPem) return;
  const signed = fields.headers.toLowerCase().split(' ');
  for (const required of ['(request-target)', 'host', 'x-date']) {
    if (!signed.includes(required)) throw new OciFailure(401, 'NotAuthenticated', `${required} must be signed`);
  }
  const lines = signed.map((h) =>
    h === '(request-target)' ? `${h}: ${req.method!.toLowerCase()} ${req.url}` : `${h}: ${req.headers[h] as string}`,
  );
  const valid = createVerify('RSA-SHA256').update(lines.join('\n')).verify(publicKeyPem, fields.signature, 'base64');
  if (!valid) throw new OciFailure(401, 'NotAuthenticated', 'The signature does not verify.');
  if (body && signed.includes('x-content-sha256')) {
    if (createHash('sha256').update(body).digest('base64') !== req.headers['x-content-sha256']) {
      throw new OciFailure(401, 'NotAuthenticated', 'x-content-sha256 does not match the body');
    }
  }
}

function checkPreconditions(req: IncomingMessage, current: StoredObject | undefined): void {
  if (req.headers['if-none-match'] === '*' && current) {
    throw new OciFailure(409, 'IfNoneMatchFailed', 'The If-None-Match header is "*" but the object exists');
  }
  const ifMatch = req.headers['if-match'];
  if (ifMatch !== undefined && ifMatch !== current?.etag) {
    throw new OciFailure(412, 'NoETagMatch', 'The ETag in If-Match does not match the object');
  }
}

async function sizedBody(req: IncomingMessage): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared === undefined) throw new OciFailure(411, 'LengthRequired', 'Content-Length is required');
  const body = await readBody(req);
  if (body.length !== Number(declared)) throw new OciFailure(400, 'InvalidParameter', 'body shorter than declared');
  return body;
}

export async function startOciServer(options: StandInOptions): Promise<StandInServer> {
  const store = new MemoryStore(options.buckets);
  const namespace = options.namespace ?? 'testns';
  const minPart = options.minPartSizeBytes ?? 10 * 1024 * 1024;
  const uploads = new Map<string, Upload>();

  function objectHeaders(obj: StoredObject): Record<string, string> {
    return {
      etag: obj.etag,
      'last-modified': obj.updated.toUTCString(),
      'opc-content-md5': obj.md5.toString('base64'),
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const q = url.searchParams;
    const m = /^\/n\/([^/]+)\/b\/([^/]+)\/([ou])(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) throw new OciFailure(404, 'NotFound', `no such route: ${req.method} ${url.pathname}`);
    const [, ns = '', bucket = '', kind, rawName] = m.map((part) =>
      part === undefined ? part : decodeURIComponent(part),
    );
    const json = req.method === 'POST' ? await readBody(req) : undefined;
    verifySignature(req, options.publicKeyPem, json);
    if (ns !== namespace || !store.hasBucket(bucket)) {
      const message = `Either the bucket named '${bucket}' does not exist in the namespace '${ns}' or you are not authorized to access it`;
      throw new OciFailure(404, 'BucketNotFound', message);
    }
    if (store.isDenied(bucket)) throw new OciFailure(403, 'NotAuthorized', `not authorized for bucket ${bucket}`);
    const name = rawName ?? '';

    if (kind === 'o' && rawName === undefined && req.method === 'GET') {
      store.count('list');
      const limit = Math.min(Number(q.get('limit') ?? 1000) || 1000, 1000);
      const from = { start: q.get('start') ?? undefined, after: q.get('startAfter') ?? undefined };
      const { objects, next } = store.list(bucket, q.get('prefix') ?? '', limit, from);
      const withSize = (q.get('fields') ?? '').split(',').includes('size');
      const summaries = objects.map((o) => ({ name: o.name, ...(withSize ? { size: o.data.length } : {}) }));
      return sendJson(res, 200, { objects: summaries, prefixes: [], ...(next ? { nextStartWith: next } : {}) });
    }
    if (kind === 'o' && rawName !== undefined) {
      const current = store.get(bucket, name);
      if (req.method === 'PUT') {
        store.count('put');
        const body = await sizedBody(req);
        checkPreconditions(req, store.get(bucket, name)); // checked when the body is in, like the service
        const obj = store.put(bucket, name, body, req.headers['content-type']);
        res.writeHead(200, objectHeaders(obj)).end();
        return;
      }
      if (!current)
        throw new OciFailure(404, 'ObjectNotFound', `The object '${name}' was not found in the bucket '${bucket}'`);
      if (req.method === 'DELETE') {
        store.count('delete');
        checkPreconditions(req, current);
        store.delete(bucket, name);
        res.writeHead(204).end();
        return;
      }
      store.count(req.method === 'HEAD' ? 'head' : req.headers.range ? 'get-range' : 'get');
      return sendMedia(req, res, current, objectHeaders(current), () => {
        throw new OciFailure(416, 'InvalidRange', 'The requested range is not satisfiable');
      });
    }
    if (kind === 'u' && rawName === undefined && req.method === 'POST') {
      store.count('mpu-create');
      const details = JSON.parse(json!.toString()) as { object: string; contentType?: string };
      checkPreconditions(req, store.get(bucket, details.object));
      const uploadId = randomUUID();
      const contentType = details.contentType ?? 'application/octet-stream';
      uploads.set(uploadId, { bucket, object: details.object, contentType, parts: new Map() });
      const created = { namespace, bucket, object: details.object, uploadId, timeCreated: new Date().toISOString() };
      return sendJson(res, 200, created);
    }
    const upload = uploads.get(q.get('uploadId') ?? '');
    if (kind !== 'u' || !upload || upload.bucket !== bucket || upload.object !== name) {
      throw new OciFailure(404, 'NoSuchUpload', `no upload ${q.get('uploadId')} for ${name}`);
    }
    if (req.method === 'PUT') {
      store.count('mpu-part');
      const partNum = Number(q.get('uploadPartNum'));
      if (!Number.isInteger(partNum) || partNum < 1 || partNum > 10_000) {
        throw new OciFailure(400, 'InvalidParameter', 'uploadPartNum must be 1..10000');
      }
      const etag = randomUUID();
      upload.parts.set(partNum, { data: await sizedBody(req), etag });
      res.writeHead(200, { etag }).end();
      return;
    }
    if (req.method === 'DELETE') {
      store.count('mpu-abort');
      uploads.delete(q.get('uploadId')!);
      res.writeHead(204).end();
      return;
    }
    store.count('mpu-commit');
    const commit = JSON.parse(json!.toString()) as { partsToCommit: { partNum: number; etag: string }[] };
    const parts = [...commit.partsToCommit].sort((a, b) => a.partNum - b.partNum);
    const datas = parts.map((p, i) => {
      const part = upload.parts.get(p.partNum);
      if (!part || part.etag !== p.etag) throw new OciFailure(400, 'InvalidUploadPart', `part ${p.partNum} unknown`);
      if (i < parts.length - 1 && part.data.length < minPart) {
        throw new OciFailure(400, 'InvalidParameter', `part ${p.partNum} is below the ${minPart}-byte minimum`);
      }
      return part.data;
    });
    if (datas.length === 0) throw new OciFailure(400, 'InvalidParameter', 'no parts to commit');
    checkPreconditions(req, store.get(bucket, name));
    uploads.delete(q.get('uploadId')!);
    const obj = store.put(bucket, name, Buffer.concat(datas), upload.contentType);
    res
      .writeHead(200, { ...objectHeaders(obj), 'opc-multipart-md5': `${obj.md5.toString('base64')}-${datas.length}` })
      .end();
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const failure = err instanceof OciFailure ? err : new OciFailure(500, 'InternalServerError', String(err));
      if (res.headersSent) return void res.destroy();
      req.resume();
      if (req.method === 'HEAD') return void res.writeHead(failure.status, { 'opc-request-id': randomUUID() }).end();
      sendJson(
        res,
        failure.status,
        { code: failure.code, message: failure.message },
        { 'opc-request-id': randomUUID() },
      );
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
