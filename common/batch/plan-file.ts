/**
 * A batch's plan in storage: its chunks as JSONL, one chunk per line, line i
 * holding chunk index i. With the plan in storage, the batch in Redis is a
 * cursor (the next chunk index, optionally with its byte offset in the plan)
 * plus counters (principle 3), and admission reads the plan on from there.
 *
 * Same input, same plan (principle 2): planning the same input again cuts
 * the same chunks. The producer writes plans (producer/batch/plan-to-storage.ts);
 * the scheduler reads them to admit chunks, the finaliser to merge the parts.
 *
 * Pieces: so that chunks can be admitted while the input is still being
 * planned, the plan is published as it is cut, in pieces: piece `p` holds
 * chunks [pieceStart(p), pieceStart(p + 1)), each piece its own create-only
 * object (planPieceUri). The bounds depend on the chunk index alone (1, 1, 2,
 * 4, … then `maxPieceChunks` chunks a piece), so a re-run cuts the same pieces
 * under the same names, the first chunk is readable as soon as it is cut, and
 * a reader finds any chunk's piece without listing. When planning ends, the
 * pieces are concatenated into the plan object (same bytes on a re-run).
 * Admission reads pieces (readPlanPieces): its cursor is (chunk index, byte
 * offset of that chunk in its piece), the first chunk of a piece at offset 0.
 */
import { chunkSchema, type Chunk } from '../contracts/batch.ts';
import type { Storage } from '../storage/index.ts';
import { splitLines } from './line-splitter.ts';

/** Chunks in a full piece: pieces grow 1, 1, 2, 4, … up to this. */
export const maxPieceChunks = 64;
const rampPieces = Math.log2(maxPieceChunks) + 1; // pieces 0..6 cover chunks [0, 64)

/** Index of the first chunk of piece `piece`. */
export function pieceStart(piece: number): number {
  if (piece < rampPieces) return piece === 0 ? 0 : 2 ** (piece - 1);
  return maxPieceChunks * (piece - rampPieces + 1);
}

/** The piece that holds chunk `index`. */
export function pieceOf(index: number): number {
  if (index < maxPieceChunks) return index === 0 ? 0 : Math.floor(Math.log2(index)) + 1;
  return Math.floor(index / maxPieceChunks) + rampPieces - 1;
}

/** The object of piece `piece` under `piecesPrefix` (a folder URI ending in `/`): `plan-00000003.jsonl`. */
export const planPieceUri = (piecesPrefix: string, piece: number): string =>
  `${piecesPrefix}plan-${String(piece).padStart(8, '0')}.jsonl`;

/** A plan line: a chunk as JSON, with its newline. */
export const planLine = (chunk: Chunk): string => `${JSON.stringify(chunk)}\n`;

/** A plan line is a chunk: small, bar its duplicate line numbers (10,000 at most). */
const maxPlanLineBytes = 1024 * 1024;

export interface PlanEntry {
  chunk: Chunk;
  /** Byte offset of the next chunk's line in the plan: a cursor for `readPlan`'s `startByte`. */
  nextByte: number;
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
 * The published plan's chunks from `cursor` on, read from its pieces
 * (`planByte`: the offset of chunk `cursor` in its piece; 0 reads that piece
 * from its start and skips to the chunk). Each entry's `nextByte` is the next
 * chunk's offset in its own piece (0 after a piece's last chunk). Stops after
 * `published` chunks (those whose pieces are written) or `limit` entries.
 */
export async function* readPlanPieces(
  storage: Pick<Storage, 'read'>,
  piecesPrefix: string,
  cursor: number,
  opts: { planByte: number; published: number; limit?: number; signal?: AbortSignal },
): AsyncGenerator<PlanEntry> {
  let index = cursor;
  let startByte: number | undefined = opts.planByte > 0 ? opts.planByte : undefined;
  let left = Math.min(opts.limit ?? Infinity, opts.published - cursor);
  while (left > 0) {
    const piece = pieceOf(index);
    const last = pieceStart(piece + 1) - 1;
    const uri = planPieceUri(piecesPrefix, piece);
    // Without an offset, the piece is read from its start: its first line is chunk pieceStart.
    const from = startByte === undefined ? pieceStart(piece) : index;
    for await (const entry of readPlanEntries(storage, uri, from, { startByte: startByte ?? 0, signal: opts.signal })) {
      if (entry.chunk.index < index) continue;
      yield entry.chunk.index === last ? { chunk: entry.chunk, nextByte: 0 } : entry;
      index++;
      if (--left === 0) return;
    }
    if (index <= last) throw new Error(`plan piece ${uri} ends at chunk ${index - 1}, before chunk ${last}`);
    startByte = undefined;
  }
}
