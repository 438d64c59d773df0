/**
 * The one error the client throws. It carries the server's stable error code
 * (common/errors.ts) so that callers branch on `code`, never on message text,
 * and says whether trying again may help. Retries are never automatic: the
 * caller decides, with `isRetryable` and `retryAfterMs`.
 */
import { errorCodes, isErrorCode, type ErrorCode } from '../../common/errors.ts';
import { errorResponseSchema } from './wire.ts';

/** A code from the catalogue, or 'unknown' for one this client does not know (a newer server). */
export type ClientErrorCode = ErrorCode | 'unknown';

export interface InterfleetApiErrorOptions {
  /** The HTTP status; undefined when no answer came (network failure, client-side deadline, abort). */
  status?: number | undefined;
  param?: string | undefined;
  retryAfterMs?: number | undefined;
  /** The server's request id (x-request-id), when it gave one. */
  requestId?: string | undefined;
  cause?: unknown;
}

/** HTTP statuses worth retrying when the code itself is unknown. */
const retryableStatuses = new Set([429, 502, 503, 504]);

export class InterfleetApiError extends Error {
  readonly code: ClientErrorCode;
  /**
   * The status the server answered with; for an error reported inside a
   * stream (after the 200), the status its code maps to; undefined when no
   * answer came at all.
   */
  readonly status: number | undefined;
  /** The offending field, for 400s (e.g. `input.text`). */
  readonly param: string | undefined;
  /** From Retry-After (429/503): how long to wait before trying again. */
  readonly retryAfterMs: number | undefined;
  readonly requestId: string | undefined;

  constructor(code: ClientErrorCode, message: string, opts: InterfleetApiErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'InterfleetApiError';
    this.code = code;
    this.status = opts.status;
    this.param = opts.param;
    this.retryAfterMs = opts.retryAfterMs;
    this.requestId = opts.requestId;
  }

  /** Whether the same request may succeed later (overload, outage, deadline, backend failure). */
  get retryable(): boolean {
    if (this.code !== 'unknown') return errorCodes[this.code].retryable;
    return this.status !== undefined && retryableStatuses.has(this.status);
  }
}

/** True for an InterfleetApiError that is worth trying again; false for anything else. */
export function isRetryable(err: unknown): boolean {
  return err instanceof InterfleetApiError && err.retryable;
}

/** Retry-After in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Builds the error from a parsed error body (OpenAI's `{error:{message, type,
 * param, code}}`), or from the status alone when the body is not one.
 */
export function errorFromBody(
  body: unknown,
  fallback: { status: number; message: string },
  opts: InterfleetApiErrorOptions = {},
): InterfleetApiError {
  const parsed = errorResponseSchema.safeParse(body);
  if (!parsed.success) return new InterfleetApiError('unknown', fallback.message, { status: fallback.status, ...opts });
  const { message, param, retry_after_ms } = parsed.data.error;
  // The producer answers a missing or wrong key with OpenAI's code for it.
  const code = parsed.data.error.code === 'invalid_api_key' ? 'unauthorized' : parsed.data.error.code;
  return new InterfleetApiError(code != null && isErrorCode(code) ? code : 'unknown', message, {
    status: fallback.status,
    param: param ?? undefined,
    ...opts,
    retryAfterMs: opts.retryAfterMs ?? retry_after_ms ?? undefined,
  });
}

/** Maps a non-2xx response onto an InterfleetApiError (reads the body). */
export async function errorFromResponse(res: Response): Promise<InterfleetApiError> {
  const text = await res.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return errorFromBody(
    body,
    { status: res.status, message: `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}` },
    {
      retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
      requestId: res.headers.get('x-request-id') ?? undefined,
    },
  );
}

/** Why a request ended without an answer: which signal fired, or the network. */
export interface FailureContext {
  /** Fires when the caller cancels (their signal, or leaving a stream early). */
  cancelSignal: AbortSignal | undefined;
  /** The client-side deadline signal. */
  deadlineSignal: AbortSignal;
  deadlineMs: number;
  what: string;
}

/** Maps whatever fetch or a body read threw onto an InterfleetApiError. */
export function errorFromFailure(err: unknown, ctx: FailureContext): InterfleetApiError {
  if (err instanceof InterfleetApiError) return err;
  if (ctx.cancelSignal?.aborted) {
    return new InterfleetApiError('cancelled', `${ctx.what}: cancelled by the caller`, { cause: err });
  }
  if (ctx.deadlineSignal.aborted) {
    return new InterfleetApiError('deadline_exceeded', `${ctx.what}: no answer within ${ctx.deadlineMs} ms`, {
      cause: err,
    });
  }
  const reason = err instanceof Error ? err.message : String(err);
  return new InterfleetApiError('unavailable', `${ctx.what}: the producer is unreachable (${reason})`, { cause: err });
}
