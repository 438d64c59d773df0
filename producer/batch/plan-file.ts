/**
 * A batch's plan in storage: its chunks as JSONL, one chunk per line, line i
 * holding chunk index i. With the plan in storage, the batch in Redis is a
 * cursor (the next chunk index, optionally with its byte offset in the plan)
 * plus counters (principle 3), and admission reads the plan on from there.
 *
 * The plan is written create-only (principle 2): planning the same input again
 * cuts the same chunks, so a planner re-run after a crash finds the plan there
 * and keeps it (`created: false`).
 */
import { Readable } from 'node:stream';
import { chunkSchema, type Chunk } from '../../common/contracts/batch.ts';
import type { Storage } from '../../common/storage/index.ts';
import { splitLines } from '../../common/batch/line-splitter.ts';
import { planBatch, type PlanOptions, type PlanResult, type PlanStorage } from './planner.ts';

const contentType = 'application/jsonl';
/** Bytes gathered before handing them to the upload. */
const writeBatchBytes = 64 * 1024;
/** A plan line is a chunk: small, bar its duplicate line numbers (10,000 at most). */
const maxPlanLineBytes = 1024 * 1024;

export interface PlanEntry {
  chunk: Chunk;
  /** Byte offset of the next chunk's line in the plan: a cursor for `readPlan`'s `startByte`. */
  nextByte: number;
}

/** Writes chunks (in index order, from 0) as a plan, create-only. */
export async function writePlan(
  storage: Pick<Storage, 'writeIfAbsent'>,
  uri: string,
  chunks: AsyncIterable<Chunk>,
  opts: { signal?: AbortSignal } = {},
): Promise<{ created: boolean; chunks: number }> {
  let count = 0;
  async function* body(): AsyncGenerator<Buffer> {
    let lines: string[] = [];
    let bytes = 0;
    for await (const chunk of chunks) {
      if (chunk.index !== count) throw new RangeError(`plan ${uri}: chunk ${chunk.index} where ${count} was due`);
      count++;
      const line = `${JSON.stringify(chunk)}\n`;
      lines.push(line);
      bytes += line.length;
      if (bytes >= writeBatchBytes) {
        yield Buffer.from(lines.join(''));
        lines = [];
        bytes = 0;
      }
    }
    if (lines.length > 0) yield Buffer.from(lines.join(''));
  }
  const { created } = await storage.writeIfAbsent(uri, Readable.from(body()), { contentType, signal: opts.signal });
  return { created, chunks: count };
}

/**
 * The plan's chunks from `fromIndex` on, with the byte offset of each next
 * one. Without `startByte` the plan is read from its start (lines before
 * `fromIndex` are skipped); with it, from that offset, which must be where
 * chunk `fromIndex` starts (a `nextByte` this returned).
 */
export async function* readPlanEntries(
  storage: Pick<Storage, 'read'>,
  uri: string,
  fromIndex = 0,
  opts: { startByte?: number; signal?: AbortSignal } = {},
): AsyncGenerator<PlanEntry> {
  const startByte = opts.startByte ?? 0;
  const stream = await storage.read(uri, { start: startByte, signal: opts.signal });
  let expected = opts.startByte === undefined ? 0 : fromIndex;
  try {
    for await (const line of splitLines(stream as AsyncIterable<Buffer>, {
      startOffset: startByte,
      maxLineBytes: maxPlanLineBytes,
    })) {
      if (line.kind !== 'line') throw new Error(`plan ${uri}: line ${line.line} is too long for a chunk`);
      const chunk = chunkSchema.parse(JSON.parse(line.text));
      if (chunk.index !== expected) {
        throw new Error(`plan ${uri}: found chunk ${chunk.index} where ${expected} was due (a bad startByte?)`);
      }
      expected++;
      if (chunk.index >= fromIndex) yield { chunk, nextByte: line.next };
    }
  } finally {
    if (!stream.destroyed) stream.destroy();
  }
}

/** The plan's chunks from `fromIndex` on, streamed. */
export async function* readPlan(
  storage: Pick<Storage, 'read'>,
  uri: string,
  fromIndex = 0,
  opts: { startByte?: number; signal?: AbortSignal } = {},
): AsyncGenerator<Chunk> {
  for await (const entry of readPlanEntries(storage, uri, fromIndex, opts)) yield entry.chunk;
}

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
