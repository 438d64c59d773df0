/**
 * Storage URIs: the only way data locations appear in jobs, configs and API
 * bodies (principle 1: Redis carries references, never data).
 *
 *   file:///abs/path/to/object      a local path; it is a URL, so escape
 *                                   `%`, `?` and `#` as %25, %3F and %23
 *   gs://bucket/key                 Google Cloud Storage; the key is literal
 *   oci://bucket@namespace/key      OCI Object Storage; `namespace` is the
 *                                   tenancy's Object Storage namespace. This
 *                                   is the form OCI's own HDFS connector and
 *                                   Data Flow use; the key is literal
 *
 * A *prefix* URI may stop anywhere (`gs://b/out/part-`, `gs://b`); an
 * *object* URI must name an object: a non-empty key or path that does not
 * end with `/` (a "folder"), on every scheme alike.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { StorageError } from './errors.ts';

export const storageSchemes = ['file', 'gs', 'oci'] as const;
export type StorageScheme = (typeof storageSchemes)[number];

export type StorageUri =
  | { scheme: 'file'; path: string }
  | { scheme: 'gs'; bucket: string; key: string }
  | { scheme: 'oci'; namespace: string; bucket: string; key: string };

const gsRe = /^gs:\/\/([^/]*)(?:\/(.*))?$/s;
const ociRe = /^oci:\/\/([^/@]*)@([^/]*)(?:\/(.*))?$/s;
// GCS: 3-63 chars (up to 222 with dots), lower-case letters, digits, - _ . ; starts and ends alphanumeric.
const gcsBucketRe = /^(?=.{3,222}$)[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$/;
const ociBucketRe = /^[A-Za-z0-9._-]{1,256}$/;
const ociNamespaceRe = /^[A-Za-z0-9_-]{1,128}$/;
const maxKeyBytes = 1024;

function invalid(uri: string, why: string): StorageError {
  return new StorageError('invalid_uri', `invalid storage URI ${JSON.stringify(uri)}: ${why}`, { uri });
}

function checkKey(uri: string, key: string): string {
  if (Buffer.byteLength(key) > maxKeyBytes) throw invalid(uri, `object names are at most ${maxKeyBytes} bytes`);
  if (/[\r\n\0]/.test(key)) throw invalid(uri, 'object names may not contain CR, LF or NUL');
  return key;
}

function parseFile(uri: string): StorageUri {
  if (!uri.startsWith('file:///')) {
    throw invalid(uri, 'file URIs need an absolute path with three slashes, e.g. file:///data/input.jsonl');
  }
  const url = new URL(uri);
  if (url.search || url.hash) throw invalid(uri, 'escape ? and # in file names as %3F and %23');
  try {
    return { scheme: 'file', path: fileURLToPath(url) };
  } catch (err) {
    throw invalid(uri, err instanceof Error ? err.message : String(err));
  }
}

function parseGs(uri: string): StorageUri {
  const m = gsRe.exec(uri);
  const bucket = m?.[1] ?? '';
  if (!gcsBucketRe.test(bucket)) {
    throw invalid(uri, 'gs URIs look like gs://bucket/key; bucket names are 3-63 lower-case letters, digits, - _ .');
  }
  return { scheme: 'gs', bucket, key: checkKey(uri, m?.[2] ?? '') };
}

function parseOci(uri: string): StorageUri {
  const m = ociRe.exec(uri);
  if (!m) throw invalid(uri, 'oci URIs look like oci://bucket@namespace/key (namespace: the tenancy namespace)');
  const [, bucket = '', namespace = '', key = ''] = m;
  if (!ociBucketRe.test(bucket)) throw invalid(uri, 'OCI bucket names are 1-256 letters, digits, - _ .');
  if (!ociNamespaceRe.test(namespace)) throw invalid(uri, 'the OCI namespace after @ is letters, digits, - _');
  return { scheme: 'oci', namespace, bucket, key: checkKey(uri, key) };
}

/** Parses any storage URI, prefixes included; throws StorageError('invalid_uri'). */
export function parseStorageUri(uri: string): StorageUri {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1];
  // One spelling per location: URIs are compared and used as names (deterministic outputs).
  if (scheme !== undefined && scheme !== scheme.toLowerCase()) throw invalid(uri, 'write the scheme in lower case');
  switch (scheme) {
    case 'file':
      return parseFile(uri);
    case 'gs':
      return parseGs(uri);
    case 'oci':
      return parseOci(uri);
    default:
      throw invalid(uri, `expected one of ${storageSchemes.map((s) => `${s}://`).join(', ')}`);
  }
}

/** Parses a URI that must name one object. */
export function parseObjectUri(uri: string): StorageUri {
  const parsed = parseStorageUri(uri);
  if (parsed.scheme === 'file' ? parsed.path.endsWith('/') : parsed.key === '' || parsed.key.endsWith('/')) {
    throw invalid(uri, 'it names a folder or bucket, not an object');
  }
  return parsed;
}

export function formatStorageUri(parsed: StorageUri): string {
  switch (parsed.scheme) {
    case 'file':
      return pathToFileURL(parsed.path).href;
    case 'gs':
      return `gs://${parsed.bucket}/${parsed.key}`;
    case 'oci':
      return `oci://${parsed.bucket}@${parsed.namespace}/${parsed.key}`;
  }
}

function refineWith(parse: (uri: string) => unknown) {
  return (uri: string, ctx: z.RefinementCtx) => {
    try {
      parse(uri);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
    }
  };
}

/** For zod schemas at the boundaries (batch API bodies, job payloads, config). */
export const storageUriSchema = z.string().superRefine(refineWith(parseStorageUri));
export const objectUriSchema = z.string().superRefine(refineWith(parseObjectUri));
