/**
 * Which storage a caller may name: the decision, apart from I/O. A URI a
 * caller gives (a batch's input_file or output_location, a training job's
 * data, checkpoint and eval URIs) is allowed only when
 *
 *   - it is spelled plainly: no `..` segment, raw or percent-encoded (400);
 *   - file://: its path, and its real path (symbolic links resolved), lie
 *     under one of `storage.file.roots`; no roots means file:// is off (403);
 *   - gs:// and oci://: the principal's grant is `any`, or the URI lies under
 *     one of its prefixes (`{tenant}` standing for the principal's tenant),
 *     matched on whole path segments: `gs://b/a` grants `gs://b/a/x`, never
 *     `gs://b/ab` (403). file:// too, but only for a key that names file://
 *     prefixes: otherwise the roots alone decide.
 *
 * The real paths come from realPathOf (real-path.ts), which the producer
 * runs before the decision (producer/auth/storage-grants.ts) and the file
 * adapter again at open time.
 */
import type { Principal } from '../auth/principal.ts';
import { isStorageError } from './errors.ts';
import { parseStorageUri, type StorageUri } from './uri.ts';

export type StorageAccessKind = 'read' | 'write';

export interface StorageAccess {
  /** The request field that named it, for the message and `param`: `input_file`, `data_uri.1`. */
  readonly field: string;
  readonly uri: string;
  readonly access: StorageAccessKind;
}

/** What of a principal the decision reads. */
export type StoragePrincipal = Pick<Principal, 'tenant' | 'storage'>;

export interface StoragePolicy {
  /** storage.file.roots, as configured (absolute paths). */
  readonly fileRoots: readonly string[];
  readonly principal: StoragePrincipal;
}

/** Lexical path → real path, for every path fileRealPaths() names. */
export type RealPaths = ReadonlyMap<string, string>;

export type StorageDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly code: 'bad_request' | 'forbidden'; readonly message: string };

const allowed: StorageDecision = { allowed: true };
const refuse = (code: 'bad_request' | 'forbidden', message: string): StorageDecision => ({
  allowed: false,
  code,
  message,
});

/** Percent-decodes until stable (a few rounds), so `%252e%252e` is seen as the `..` it may become. */
function decoded(text: string): string {
  let s = text;
  for (let i = 0; i < 3; i++) {
    let next: string;
    try {
      next = decodeURIComponent(s);
    } catch {
      return s;
    }
    if (next === s) return s;
    s = next;
  }
  return s;
}

/** Whether the URI, as written or once decoded, has a `..` segment (URL parsing would silently resolve it). */
export function hasDotDot(uri: string): boolean {
  const rest = uri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const dots = (text: string) => text.split(/[/\\]/).some((segment) => segment === '..');
  return dots(rest) || dots(decoded(rest)) || rest.split('/').some((segment) => decoded(segment) === '..');
}

/** Whether `path` is `dir` or lies under it, on whole segments. */
export function isUnder(path: string, dir: string): boolean {
  const d = dir.endsWith('/') ? dir : `${dir}/`;
  return path === d.slice(0, -1) || path.startsWith(d);
}

/** A grant prefix with `{tenant}` filled in. */
export const expandPrefix = (prefix: string, tenant: string): string => prefix.replaceAll('{tenant}', tenant);

/** The granted prefixes as parsed URIs; a prefix that does not parse grants nothing. */
function grantedPrefixes(principal: StoragePolicy['principal']): StorageUri[] {
  if (principal.storage === 'any') return [];
  return principal.storage.prefixes.flatMap((p) => {
    try {
      return [parseStorageUri(expandPrefix(p, principal.tenant))];
    } catch {
      return [];
    }
  });
}

/** Whether `uri` lies under the grant `prefix` (same scheme, bucket, namespace; key or path on whole segments). */
function withinGrant(uri: StorageUri, prefix: StorageUri, real: RealPaths): boolean {
  if (uri.scheme === 'file' && prefix.scheme === 'file') {
    const realUri = real.get(uri.path) ?? uri.path;
    const realPrefix = real.get(prefix.path) ?? prefix.path;
    return isUnder(uri.path, prefix.path) && isUnder(realUri, realPrefix);
  }
  if (uri.scheme === 'gs' && prefix.scheme === 'gs') {
    return uri.bucket === prefix.bucket && (prefix.key === '' || isUnder(uri.key, prefix.key));
  }
  if (uri.scheme === 'oci' && prefix.scheme === 'oci') {
    return (
      uri.namespace === prefix.namespace &&
      uri.bucket === prefix.bucket &&
      (prefix.key === '' || isUnder(uri.key, prefix.key))
    );
  }
  return false;
}

function parse(uri: string): StorageUri | string {
  try {
    return parseStorageUri(uri);
  } catch (err) {
    if (isStorageError(err, 'invalid_uri')) return err.message;
    throw err;
  }
}

/**
 * Every local path whose real path the decision on `requests` needs: each
 * file:// URI's path, each root, and each file:// grant prefix.
 */
export function fileRealPathsNeeded(requests: readonly StorageAccess[], policy: StoragePolicy): string[] {
  const paths = new Set<string>();
  for (const { uri } of requests) {
    const parsed = parse(uri);
    if (typeof parsed !== 'string' && parsed.scheme === 'file') paths.add(parsed.path);
  }
  if (paths.size === 0) return [];
  for (const root of policy.fileRoots) paths.add(root);
  for (const prefix of grantedPrefixes(policy.principal)) if (prefix.scheme === 'file') paths.add(prefix.path);
  return [...paths];
}

/** The decision on one access. `real` maps each path fileRealPathsNeeded() named to its real path. */
export function decideStorageAccess(request: StorageAccess, policy: StoragePolicy, real: RealPaths): StorageDecision {
  const { field, uri } = request;
  if (hasDotDot(uri)) {
    return refuse('bad_request', `${field}: ${uri} has a ".." segment; name the location without one`);
  }
  const parsed = parse(uri);
  if (typeof parsed === 'string') return refuse('bad_request', `${field}: ${parsed}`);

  if (parsed.scheme === 'file') {
    if (policy.fileRoots.length === 0) {
      return refuse('forbidden', `${field}: file:// storage is off on this fleet (storage.file.roots is empty)`);
    }
    const roots = policy.fileRoots.join(', ');
    const root = policy.fileRoots.find((r) => isUnder(parsed.path, r));
    if (root === undefined) {
      return refuse(
        'forbidden',
        `${field}: ${uri} is outside the folders file:// may name (storage.file.roots: ${roots})`,
      );
    }
    const realPath = real.get(parsed.path) ?? parsed.path;
    if (!isUnder(realPath, real.get(root) ?? root)) {
      return refuse('forbidden', `${field}: ${uri} leads through a symbolic link out of ${root} (storage.file.roots)`);
    }
  }

  const { storage } = policy.principal;
  const grants = grantedPrefixes(policy.principal);
  // file:// is the operator's (the roots above); a key narrows it further only when it names file:// prefixes.
  const narrowsFiles = grants.some((p) => p.scheme === 'file');
  if (
    storage !== 'any' &&
    (parsed.scheme !== 'file' || narrowsFiles) &&
    !grants.some((p) => withinGrant(parsed, p, real))
  ) {
    const granted = storage.prefixes.map((p) => expandPrefix(p, policy.principal.tenant));
    return refuse(
      'forbidden',
      `${field}: ${uri} is outside the storage this key may ${request.access} (${granted.join(', ') || 'none'})`,
    );
  }
  return allowed;
}
