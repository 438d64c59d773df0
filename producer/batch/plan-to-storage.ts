/**
 * Plans a batch straight into its plan object (common/batch/plan-file.ts).
 */
import type { Chunk } from '../../common/contracts/batch.ts';
import type { Storage } from '../../common/storage/index.ts';
import { writePlan } from '../../common/batch/plan-file.ts';
import { planBatch, type PlanOptions, type PlanResult, type PlanStorage } from './planner.ts';

/**
 * Plans a batch straight into a plan object: planBatch and writePlan joined by
 * a small queue, so memory holds a few chunks, never the plan. When the plan
 * already exists (a re-run), it is kept and this run only counts. A planning
 * failure aborts the upload: no partial plan is ever published.
 */
export async function planToStorage(
  storage: PlanStorage & Pick<Storage, 'writeIfAbsent'>,
  inputUri: string,
  planUri: string,
  opts: PlanOptions,
): Promise<PlanResult & { created: boolean }> {
  const queue = new ChunkQueue(64);
  let writeFailure: { err: unknown } | undefined;
  // Handled at once: a failed upload stops the planner at its next chunk instead of going unnoticed.
  const writing = writePlan(storage, planUri, queue.drain(), { signal: opts.signal }).then(
    (written) => {
      queue.close(); // an existing plan may be kept without reading the body: count on without writing
      return written;
    },
    (err: unknown) => {
      writeFailure = { err };
      queue.stop(err);
      return undefined;
    },
  );
  let result: PlanResult;
  try {
    result = await planBatch(storage, inputUri, opts, (chunk) => queue.push(chunk));
  } catch (err) {
    queue.fail(err);
    await writing;
    throw err;
  }
  queue.end();
  const written = await writing;
  if (writeFailure) throw writeFailure.err;
  return { ...result, created: written!.created };
}

/**
 * A bounded single-producer single-consumer queue. Once the consumer has
 * stopped reading, pushes are dropped (it had no use for them) or, if it
 * failed, throw its error.
 */
class ChunkQueue {
  private items: Chunk[] = [];
  private ended = false;
  private failure: { err: unknown } | undefined;
  private stopped = false;
  private stopError: { err: unknown } | undefined;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  constructor(private readonly capacity: number) {}

  async push(chunk: Chunk): Promise<void> {
    this.throwIfFailed();
    while (!this.stopped && this.items.length >= this.capacity) {
      await new Promise<void>((resolve) => (this.wakeProducer = resolve));
    }
    this.throwIfFailed();
    if (this.stopped) return; // the plan was already there: nothing to write
    this.items.push(chunk);
    this.wake('consumer');
  }

  private throwIfFailed(): void {
    if (this.stopError) throw this.stopError.err;
  }

  /** The consumer failed: the next push throws `err`. */
  stop(err: unknown): void {
    this.stopError = { err };
    this.close();
  }

  /** The consumer is done: pushes are dropped from now on. */
  close(): void {
    this.stopped = true;
    this.items = [];
    this.wake('producer');
  }

  end(): void {
    this.ended = true;
    this.wake('consumer');
  }

  fail(err: unknown): void {
    this.failure = { err };
    this.wake('consumer');
  }

  async *drain(): AsyncGenerator<Chunk> {
    try {
      for (;;) {
        if (this.failure) throw this.failure.err;
        const item = this.items.shift();
        if (item !== undefined) {
          this.wake('producer');
          yield item;
        } else if (this.ended) {
          return;
        } else {
          await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
        }
      }
    } finally {
      this.close();
    }
  }

  private wake(who: 'consumer' | 'producer'): void {
    const wake = who === 'consumer' ? this.wakeConsumer : this.wakeProducer;
    if (who === 'consumer') this.wakeConsumer = undefined;
    else this.wakeProducer = undefined;
    wake?.();
  }
}
