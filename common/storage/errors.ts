/**
 * Storage errors with stable codes. Every adapter maps its SDK's failures onto
 * these, so callers (batch planning, bulk workers) branch on `code` and
 * `retryable`, never on an SDK's error shape or message text.
 */

export const storageErrorCodes = {
  /** The object (or, on file://, a path component) does not exist. */
  not_found: { retryable: false },
  /** Credentials rejected or not allowed (401/403; OCI's ambiguous bucket 404s). */
  permission_denied: { retryable: false },
  /** A precondition the caller asked for failed (other than create-only, which is a result). */
  precondition_failed: { retryable: false },
  /** The URI is malformed, of the wrong scheme, or outside the allowed roots' shape. */
  invalid_uri: { retryable: false },
  /** Network trouble, throttling (429) or a 5xx: try again later. */
  unavailable: { retryable: true },
  /** The caller's AbortSignal fired. */
  cancelled: { retryable: false },
  /** Anything else (a 400 from the service, an integrity check that failed, a bug). */
  internal: { retryable: false },
} as const satisfies Record<string, { retryable: boolean }>;

export type StorageErrorCode = keyof typeof storageErrorCodes;

export interface StorageErrorOptions {
  cause?: unknown;
  /** The URI the failed call was about, for messages and logs. */
  uri?: string;
}

export class StorageError extends Error {
  readonly code: StorageErrorCode;
  readonly uri: string | undefined;

  constructor(code: StorageErrorCode, message: string, opts: StorageErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'StorageError';
    this.code = code;
    this.uri = opts.uri;
  }

  get retryable(): boolean {
    return storageErrorCodes[this.code].retryable;
  }
}

export function isStorageError(err: unknown, code?: StorageErrorCode): err is StorageError {
  return err instanceof StorageError && (code === undefined || err.code === code);
}

/** The code for an HTTP status from either cloud (GCS JSON API, OCI REST). */
export function codeForHttpStatus(status: number): StorageErrorCode {
  if (status === 404) return 'not_found';
  if (status === 401 || status === 403) return 'permission_denied';
  if (status === 412) return 'precondition_failed';
  if (status === 408 || status === 429 || status >= 500) return 'unavailable';
  return 'internal';
}

// Node's socket errors, fetch's TypeError('fetch failed'), an open circuit: the service was not reached.
const networkCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'EOPENBREAKER', // OCI SDK's circuit breaker is open
]);

export function isNetworkError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && networkCodes.has(code)) return true;
  return err.name === 'TypeError' && err.message === 'fetch failed';
}

export function cancelled(uri: string, signal: AbortSignal): StorageError {
  return new StorageError('cancelled', `storage call on ${uri} was aborted`, { uri, cause: signal.reason });
}

/**
 * Runs `call` unless `signal` has fired, and stops waiting for it when the
 * signal fires. The SDKs take no per-call signal, so an abandoned call may
 * still finish in the background; streams the adapter owns are destroyed by
 * the adapter itself.
 */
export async function abortable<T>(uri: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
  if (!signal) return call();
  if (signal.aborted) throw cancelled(uri, signal);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(cancelled(uri, signal));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([call(), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}
