/**
 * Tenants come from the key, never from the request body: the tenant a job
 * is charged to (fair share, idempotency claims) and the jobs a caller may
 * see. Only `admin` (and auth off, whose anonymous principal is admin) may
 * act for another tenant.
 */
import { hasScope, type Principal } from '../../common/auth/principal.ts';
import { FleetError } from '../../common/errors.ts';

/** The tenant of a new job; a body naming another tenant is refused unless the key has `admin`. */
export function jobTenant(principal: Principal, named: string | undefined): string {
  if (named === undefined || named === principal.tenant) return principal.tenant;
  if (hasScope(principal, 'admin')) return named;
  throw new FleetError(
    'forbidden',
    `tenant: API key '${principal.keyId}' belongs to tenant '${principal.tenant}' and may not submit for '${named}' (leave tenant out; only an admin key names one)`,
    { param: 'tenant' },
  );
}

/** Whether the caller may see (read, cancel) a job of `tenant`; callers answer 404 when not, as for a missing job. */
export function canSee(principal: Principal, tenant: string): boolean {
  return principal.tenant === tenant || hasScope(principal, 'admin');
}

/** The tenant a listing is confined to; undefined: every tenant (admin). */
export function listTenant(principal: Principal): string | undefined {
  return hasScope(principal, 'admin') ? undefined : principal.tenant;
}
