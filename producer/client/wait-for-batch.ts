/**
 * Polls a batch until it reaches a final status. A batch runs for minutes
 * to hours, so a passing outage (503, a dropped connection) does not end the
 * wait: retryable failures are waited out, up to `maxFailures` in a row.
 */
import { isTerminal } from '../../common/batch/batch-state.ts';
import type { ApiBatch } from '../../common/contracts/batch-api.ts';
import { InterfleetApiError } from './errors.ts';

export interface WaitForBatchOptions {
  /** Called after every poll with the batch as it stands (the final one included). */
  onProgress?: (batch: ApiBatch) => void;
  /** Time between polls (ms); default 2000. */
  intervalMs?: number;
  /** Retryable failures in a row before giving up; default 5. */
  maxFailures?: number;
  /** Stops waiting (rejects with code `cancelled`); the batch itself runs on. */
  signal?: AbortSignal;
}

export async function pollUntilFinal(
  batchId: string,
  get: (signal: AbortSignal | undefined) => Promise<ApiBatch>,
  opts: WaitForBatchOptions = {},
): Promise<ApiBatch> {
  const intervalMs = opts.intervalMs ?? 2000;
  const maxFailures = opts.maxFailures ?? 5;
  let failures = 0;
  for (;;) {
    let batch: ApiBatch | undefined;
    let waitMs = intervalMs;
    try {
      batch = await get(opts.signal);
      failures = 0;
    } catch (err) {
      if (!(err instanceof InterfleetApiError) || !err.retryable || ++failures >= maxFailures) throw err;
      waitMs = Math.max(intervalMs, err.retryAfterMs ?? 0);
    }
    if (batch) {
      opts.onProgress?.(batch);
      if (isTerminal(batch.status)) return batch;
    }
    await sleep(waitMs, batchId, opts.signal);
  }
}

function sleep(ms: number, batchId: string, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (): void => {
      clearTimeout(timer);
      reject(new InterfleetApiError('cancelled', `waiting for batch ${batchId}: cancelled by the caller`));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve();
    }, ms);
    if (signal?.aborted) stop();
    else signal?.addEventListener('abort', stop, { once: true });
  });
}
