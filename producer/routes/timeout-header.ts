import { FleetError } from '../../common/errors.ts';

/** Reads the optional per-request deadline header (milliseconds). */
export function parseTimeoutHeader(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value[0] : value;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 1) {
    throw new FleetError('bad_request', `header x-interfleet-timeout-ms must be a positive integer, got "${raw}"`, {
      param: 'x-interfleet-timeout-ms',
    });
  }
  return ms;
}
