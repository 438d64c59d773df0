/**
 * Who is calling: the principal an API key names. The producer resolves one
 * per request (producer/auth/), and every route and service takes what it
 * needs from it (the tenant a job is charged to, the scopes a route checks,
 * the storage a caller may name) instead of from the request body.
 */

/** What a key may do: run real-time inference, batches, training; read state; administer. */
export const scopes = ['infer', 'batch', 'train', 'read', 'admin'] as const;
export type Scope = (typeof scopes)[number];

/**
 * Storage a caller may name, as URI prefixes (`gs://bucket/prefix/`,
 * `oci://bucket@namespace/prefix/`, `file:///data/prefix/`) matched on whole
 * segments; `{tenant}` in a prefix stands for the principal's tenant, so one
 * grant can give every tenant its own prefix. `file://` must also lie under
 * storage.file.roots (common/storage/confinement.ts decides).
 * `any`: no confinement (auth off, or a key granted every bucket on purpose).
 */
export type StorageGrant = 'any' | { readonly prefixes: readonly string[] };

export interface Principal {
  /** The key's id from the key file (never the key itself); `anonymous` when auth is off. */
  readonly keyId: string;
  readonly tenant: string;
  readonly scopes: ReadonlySet<Scope>;
  readonly storage: StorageGrant;
}

/** The tenant jobs are charged to when auth is off and the body names none. */
export const DEFAULT_TENANT = 'default';

/** Auth off (npm start on loopback, or `producer.auth: none`): every scope, any storage; a body may name its tenant. */
export const anonymousPrincipal: Principal = {
  keyId: 'anonymous',
  tenant: DEFAULT_TENANT,
  scopes: new Set(scopes),
  storage: 'any',
};

export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.has(scope) || principal.scopes.has('admin');
}
