/**
 * Whether a reduce's error is worth another attempt: a pure function of the
 * step that failed and what was thrown, branching on codes, never on text.
 *
 * - reduce (pull every rank's output, then the built-in average or the job's
 *   reduce program: reduce-program.ts): a StorageError says itself
 *   (`unavailable`: network trouble, throttling, a 5xx, is retried;
 *   `not_found`, `permission_denied`, `invalid_uri`... are for good).
 *   Anything else is about the inputs or the program (shapes that differ, a
 *   missing tensor, the round before's model missing): the same inputs fail
 *   the same way again, so for good.
 * - push (upload the model): a StorageError says itself; anything else comes
 *   from the worker's own disk while it reads the files: another attempt,
 *   possibly on another worker, may well succeed.
 * - settle (Redis: the Lua call that moves the gang on): a connection lost,
 *   a failover, a Redis busy or loading; the call is idempotent (it moves the
 *   gang only from `reducing` at this round), so it is retried.
 * A FleetError anywhere carries its own `retryable`.
 */
import { FleetError } from '../../common/errors.ts';
import { isStorageError } from '../../common/storage/index.ts';

export type ReduceStep = 'reduce' | 'push' | 'settle';

export interface ReduceFailure {
  retryable: boolean;
  /** What failed, for the job's failedReason (then the gang's error). */
  message: string;
}

const what: Record<ReduceStep, string> = {
  reduce: 'reducing the checkpoints failed',
  push: 'uploading the model failed',
  settle: 'moving the job to its next round failed',
};

export function reduceFailure(step: ReduceStep, err: unknown): ReduceFailure {
  const text = err instanceof Error ? err.message : String(err);
  if (isStorageError(err)) {
    return { retryable: err.retryable, message: `${what[step]} (${err.code}): ${text}` };
  }
  if (err instanceof FleetError) return { retryable: err.retryable, message: `${what[step]} (${err.code}): ${text}` };
  return { retryable: step !== 'reduce', message: `${what[step]}: ${text}` };
}
