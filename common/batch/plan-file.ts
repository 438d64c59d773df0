/**
 * A batch's plan in storage: its chunks as JSONL, one chunk per line, line i
 * holding chunk index i. With the plan in storage, the batch in Redis is a
 * cursor (the next chunk index, optionally with its byte offset in the plan)
 * plus counters (principle 3), and admission reads the plan on from there.
 *
 * The plan is written create-only (principle 2): planning the same input again
 * cuts the same chunks, so a planner re-run after a crash finds the plan there
 * and keeps it (`created: false`). The producer writes plans
 * (producer/batch/plan-to-storage.ts); the scheduler reads them to admit chunks.
 */
import { Readable } from 'node:stream';
import { chunkSchema, type Chunk } from '../contracts/batch.ts';
import type { Storage } from '../storage/index.ts';
import { splitLines } from './line-splitter.ts';

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
