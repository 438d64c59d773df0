/**
 * Polls a long-running resource (a batch, a training job) until it reaches a
 * final status. Such work runs for minutes to days, so a passing outage (503,
 * a dropped connection) does not end the wait: retryable failures are waited
 * out, up to `maxFailures` in a row.
 */
import { InterfleetApiError } from './errors.ts';

export interface WaitOptions<T> {
  /** Called after every poll with the resource as it stands (the final one included). */
  onProgress?: (resource: T) => void;
  /** Time between polls (ms); default 2000. */
  intervalMs?: number;
  /** Retryable failures in a row before giving up; default 5. */
  maxFailures?: number;
  /** Stops waiting (rejects with code `cancelled`); the work itself runs on. */
  signal?: AbortSignal;
}

/** What is polled: `what` names it in a cancellation ("batch b-1"). */
export interface Polled<T> {
  what: string;
  get: (signal: AbortSignal | undefined) => Promise<T>;
  isFinal: (resource: T) => boolean;
}

export async function pollUntilFinal<T>(polled: Polled<T>, opts: WaitOptions<T> = {}): Promise<T> {
  const intervalMs = opts.intervalMs ?? 2000;
  const maxFailures = opts.maxFailures ?? 5;
  let failures = 0;
  for (;;) {
    let resource: T | undefined;
    let waitMs = intervalMs;
    try {
      resource = await polled.get(opts.signal);
      failures = 0;
    } catch (err) {
      if (!(err instanceof InterfleetApiError) || !err.retryable || ++failures >= maxFailures) throw err;
      waitMs = Math.max(intervalMs, err.retryAfterMs ?? 0);
    }
    if (resource !== undefined) {
      opts.onProgress?.(resource);
      if (polled.isFinal(resource)) return resource;
    }
    await sleep(waitMs, polled.what, opts.signal);
  }
}

function sleep(ms: number, what: string, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (): void => {
      clearTimeout(timer);
      reject(new InterfleetApiError('cancelled', `waiting for ${what}: cancelled by the caller`));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve();
    }, ms);
    if (signal?.aborted) stop();
    else signal?.addEventListener('abort', stop, { once: true });
  });
}
