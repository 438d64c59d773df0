/**
 * What the GCS and OCI stand-in servers share: an in-memory object store
 * with generations, a list of buckets (others answer "no such bucket"),
 * buckets told to refuse access, and small HTTP helpers. Every mutation is
 * synchronous, so a check-then-write (a precondition) is atomic on the one
 * event loop, as it is on the real services.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface StoredObject {
  name: string;
  data: Buffer;
  generation: number;
  etag: string;
  contentType: string;
  updated: Date;
  md5: Buffer;
}

export interface StandInOptions {
  buckets: string[];
  /** OCI: the namespace in every path. */
  namespace?: string;
  /** OCI: PEM public key that request signatures must verify against. */
  publicKeyPem?: string;
  /** OCI: smallest part but the last (OCI's is 10 MiB). */
  minPartSizeBytes?: number;
}

export class MemoryStore {
  private readonly buckets = new Map<string, Map<string, StoredObject>>();
  private readonly denied = new Set<string>();
  private lastGeneration = 0;
  /** Requests served, by operation name: lets tests check which API paths were taken. */
  readonly counts: Record<string, number> = {};

  constructor(buckets: string[]) {
    for (const bucket of buckets) this.buckets.set(bucket, new Map());
  }

  count(op: string): void {
    this.counts[op] = (this.counts[op] ?? 0) + 1;
  }

  deny(bucket: string, denied = true): void {
    if (denied) this.denied.add(bucket);
    else this.denied.delete(bucket);
  }

  isDenied(bucket: string): boolean {
    return this.denied.has(bucket);
  }

  hasBucket(bucket: string): boolean {
    return this.buckets.has(bucket);
  }

  get(bucket: string, name: string): StoredObject | undefined {
    return this.buckets.get(bucket)?.get(name);
  }

  put(bucket: string, name: string, data: Buffer, contentType = 'application/octet-stream'): StoredObject {
    // Generations grow like GCS's (microsecond-ish, unique); etags are opaque.
    const generation = Math.max(Date.now() * 1000, this.lastGeneration + 1);
    this.lastGeneration = generation;
    const md5 = createHash('md5').update(data).digest();
    const obj = { name, data, generation, etag: `"${generation.toString(36)}"`, contentType, updated: new Date(), md5 };
    this.buckets.get(bucket)!.set(name, obj);
    return obj;
  }

  delete(bucket: string, name: string): boolean {
    return this.buckets.get(bucket)?.delete(name) ?? false;
  }

  /** Names under `prefix` in byte order, from `from` (inclusive) or after `after`, at most `limit` + whether more remain. */
  list(bucket: string, prefix: string, limit: number, from?: { start?: string; after?: string }) {
    const names = [...(this.buckets.get(bucket)?.keys() ?? [])]
      .filter((n) => n.startsWith(prefix))
      .filter((n) => from?.start === undefined || byteOrder(n, from.start) >= 0)
      .filter((n) => from?.after === undefined || byteOrder(n, from.after) > 0)
      .sort(byteOrder);
    return { objects: names.slice(0, limit).map((n) => this.get(bucket, n)!), next: names[limit] };
  }
}

export const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * An HTTP Range header against an object of `size` bytes (RFC 9110): null
 * for none, 'unsatisfiable' for 416, else the inclusive byte span.
 */
export function parseRange(header: string | undefined, size: number) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // malformed ranges are ignored, as HTTP says
  if (m[1] === '') {
    const suffix = Number(m[2]);
    return suffix === 0 || size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** Sends an object's bytes, honouring Range; the caller adds its service's headers. */
export function sendMedia(
  req: IncomingMessage,
  res: ServerResponse,
  obj: StoredObject,
  headers: Record<string, string>,
  unsatisfiable: () => void,
): void {
  const range = parseRange(req.headers.range, obj.data.length);
  if (range === 'unsatisfiable') return unsatisfiable();
  const body = range ? obj.data.subarray(range.start, range.end + 1) : obj.data;
  res.writeHead(range ? 206 : 200, {
    ...headers,
    'content-type': obj.contentType,
    'content-length': body.length,
    ...(range ? { 'content-range': `bytes ${range.start}-${range.end}/${obj.data.length}` } : {}),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
