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

export interface ModelBackend {
  /** The backend kind, as configured (`embedded`, `openai`, `echo`). */
  readonly kind: string;
  /** Tasks this backend can run; the producer rejects others with 400. */
  readonly tasks: ReadonlySet<TaskKind>;
  run(input: TaskInput, opts: RunOptions): Promise<TaskOutput>;
  close(): Promise<void>;
}
