/**
 * Micro-batching for bulk work: records are grouped into batches of
 * `batchSize`, and each batch goes to the backend's `runMany` when it has
 * one (one call, the backend batches internally), else to `run()` with at
 * most `concurrency` calls in flight. Either way the result is one entry per
 * input, in input order: the output, or the Error of that input alone.
 * Only an aborted signal rejects the whole batch (with the signal's reason).
 */
import type { TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import { BULK_PRIORITY, type ModelBackend } from '../backends/backend.ts';

export const DEFAULT_BATCH_SIZE = 64;
/** In-flight run() calls for a backend without runMany (e.g. an upstream HTTP server). */
export const DEFAULT_RUN_CONCURRENCY = 16;

export type RecordResult = TaskOutput | Error;

export interface RunBatchOptions {
  signal: AbortSignal;
  /** Bound on concurrent run() calls when the backend has no runMany. */
  concurrency?: number;
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/** Runs one batch: runMany when the backend has it, else run() with bounded concurrency. */
export async function runBatch(
  backend: ModelBackend,
  inputs: readonly TaskInput[],
  opts: RunBatchOptions,
): Promise<RecordResult[]> {
  const { signal } = opts;
  if (signal.aborted) throw signal.reason;
  if (inputs.length === 0) return [];
  if (backend.runMany !== undefined) {
    const results = await backend.runMany(inputs, { signal, priority: BULK_PRIORITY });
    if (results.length !== inputs.length) {
      throw new Error(`backend ${backend.kind} runMany returned ${results.length} results for ${inputs.length} inputs`);
    }
    return results;
  }
  const results = new Array<RecordResult>(inputs.length);
  let next = 0;
  const worker = async () => {
    while (next < inputs.length && !signal.aborted) {
      const i = next++;
      try {
        results[i] = await backend.run(inputs[i]!, { signal, priority: BULK_PRIORITY });
      } catch (err) {
        results[i] = asError(err);
      }
    }
  };
  const lanes = Math.max(1, Math.min(opts.concurrency ?? DEFAULT_RUN_CONCURRENCY, inputs.length));
  await Promise.all(Array.from({ length: lanes }, worker));
  if (signal.aborted) throw signal.reason;
  return results;
}

/** Groups items into arrays of `size` (the last one may be smaller; none is empty). */
export async function* groupBatches<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`batch size must be an integer >= 1: ${size}`);
  let group: T[] = [];
  for await (const item of items) {
    group.push(item);
    if (group.length === size) {
      yield group;
      group = [];
    }
  }
  if (group.length > 0) yield group;
}
