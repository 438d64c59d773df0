/**
 * The model-backend seam. A backend runs one task input and returns its
 * output; chat backends call `onDelta` with each piece of text as it is
 * generated so the lane can stream it to the caller. Backends honour the
 * AbortSignal (deadline passed, caller gone, worker draining) by stopping
 * generation and rejecting with the signal's reason.
 */
import type { TaskInput, TaskKind, TaskOutput } from '../../common/contracts/tasks.ts';

/**
 * Scheduling priority inside a backend that batches requests from both lanes
 * (lower runs first, as in vLLM's `--scheduling-policy priority`): a
 * real-time prompt is taken ahead of queued bulk prompts, so bulk work in the
 * engine delays real-time by its decode steps, not by its prefill queue.
 * Backends without such a queue ignore it.
 */
export const REALTIME_PRIORITY = 0;
export const BULK_PRIORITY = 1;

export interface RunOptions {
  signal: AbortSignal;
  /** REALTIME_PRIORITY or BULK_PRIORITY (default: real-time). */
  priority?: number;
  /** Called with each generated text piece, in order (chat tasks only). */
  onDelta?: (text: string) => void;
}

export interface RunManyOptions {
  signal: AbortSignal;
  /** As RunOptions.priority (default: bulk, the lane that batches). */
  priority?: number;
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
