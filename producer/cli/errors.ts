/**
 * What the CLI says when a command fails: one line a person can act on,
 * naming the API address when the API could not be reached at all.
 */
import { InterfleetApiError } from '../client/index.ts';

/** Exit statuses: 1 the command failed; 2 the batch ended failed, expired or cancelled. */
export const EXIT_FAILED = 1;
export const EXIT_BATCH_NOT_COMPLETED = 2;

/** The first system error code (ECONNREFUSED, ENOTFOUND…) in a cause chain. */
function systemCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    // undici groups a refused IPv4 and IPv6 connect under one AggregateError.
    if (e instanceof AggregateError) {
      const inner = e.errors.map(systemCode).find((c) => c !== undefined);
      if (inner) return inner;
    }
  }
  return undefined;
}

/** Why the network failed: a system error code, else the innermost cause's message ("bad port"). */
function networkReason(err: unknown): string {
  const code = systemCode(err);
  if (code) return code;
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && e.cause instanceof Error && depth < 5; depth++) e = e.cause;
  return e instanceof Error ? e.message : 'no answer';
}

export function describeError(err: unknown, url: string): string {
  if (err instanceof InterfleetApiError) {
    if (err.status === undefined && err.code === 'unavailable') {
      return `cannot reach the interfleet API at ${url} (${networkReason(err)})`;
    }
    if (err.status === undefined && err.code === 'deadline_exceeded') {
      return `the interfleet API at ${url} did not answer in time`;
    }
    if (err.code === 'unauthorized') {
      return `${err.message} (HTTP 401): pass the key with --api-key or env INTERFLEET_API_KEY`;
    }
    const where = err.param ? ` [${err.param}]` : '';
    return err.status === undefined ? err.message : `${err.message}${where} (HTTP ${err.status})`;
  }
  return err instanceof Error ? err.message : String(err);
}
