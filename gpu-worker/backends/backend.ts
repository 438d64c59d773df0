/**
 * The model-backend seam. A backend runs one task input and returns its
 * output; chat backends call `onDelta` with each piece of text as it is
 * generated so the lane can stream it to the caller. Backends honour the
 * AbortSignal (deadline passed, caller gone, worker draining) by stopping
 * generation and rejecting with the signal's reason.
 */
import type { TaskInput, TaskKind, TaskOutput } from '../../common/contracts/tasks.ts';

export interface RunOptions {
  signal: AbortSignal;
  /** Called with each generated text piece, in order (chat tasks only). */
  onDelta?: (text: string) => void;
}

export interface RunManyOptions {
  signal: AbortSignal;
}

export interface ModelBackend {
  /** The backend kind, as configured (`embedded`, `openai`, `echo`). */
  readonly kind: string;
  /** Tasks this backend can run; the producer rejects others with 400. */
  readonly tasks: ReadonlySet<TaskKind>;
  run(input: TaskInput, opts: RunOptions): Promise<TaskOutput>;
  /**
   * Optional micro-batching for bulk work: runs many inputs at once. Result i
   * belongs to input i; a failure of one input is an Error in its slot, not a
   * rejection. Rejects only when the signal aborts (with its reason).
   */
  runMany?(inputs: readonly TaskInput[], opts: RunManyOptions): Promise<Array<TaskOutput | Error>>;
  close(): Promise<void>;
}
