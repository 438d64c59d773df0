/**
 * The error catalogue. Every failure that crosses a boundary (HTTP, Redis
 * reply, worker → producer) carries one of these stable codes; callers branch
 * on `code`, never on message text.
 */
export const errorCodes = {
  bad_request: { status: 400, retryable: false },
  /** No API key, or one the fleet does not know. */
  unauthorized: { status: 401, retryable: false },
  /** A known key without the scope the route needs, or a storage URI outside the key's grants. */
  forbidden: { status: 403, retryable: false },
  payload_too_large: { status: 413, retryable: false },
  model_not_found: { status: 404, retryable: false },
  /** A resource (batch, route) that does not exist. */
  not_found: { status: 404, retryable: false },
  /** The resource's state does not allow the request (cancel a finished batch). */
  conflict: { status: 409, retryable: false },
  unsupported_task: { status: 400, retryable: false },
  overloaded: { status: 429, retryable: true },
  unavailable: { status: 503, retryable: true },
  deadline_exceeded: { status: 504, retryable: true },
  cancelled: { status: 499, retryable: false },
  backend_failed: { status: 502, retryable: true },
  internal: { status: 500, retryable: false },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

export type ErrorCode = keyof typeof errorCodes;

export interface FleetErrorOptions {
  cause?: unknown;
  /** JSON path of the offending field, for 400s. */
  param?: string;
  /** How long the caller should wait before trying again (429/503). */
  retryAfterMs?: number;
}

export class FleetError extends Error {
  readonly code: ErrorCode;
  readonly param: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, opts: FleetErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'FleetError';
    this.code = code;
    this.param = opts.param;
    this.retryAfterMs = opts.retryAfterMs;
  }

  get status(): number {
    return errorCodes[this.code].status;
  }

  get retryable(): boolean {
    return errorCodes[this.code].retryable;
  }
}

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorCodes, value);
}

/** Wraps anything thrown into a FleetError, keeping the original as `cause`. */
export function toFleetError(err: unknown, fallback: ErrorCode = 'internal'): FleetError {
  if (err instanceof FleetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FleetError(fallback, message, { cause: err });
}
