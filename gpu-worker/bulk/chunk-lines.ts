/**
 * Reads a chunk's byte range from storage as a stream and yields its lines
 * with their 1-based line numbers in the input object (`firstLine` + index).
 *
 * - Lines end at LF; a CR before the LF (CRLF) is dropped. The last line may
 *   lack its LF (end of the object, or a range that ends mid-object exactly
 *   on a boundary cut by the planner).
 * - Blank lines (nothing but spaces, tabs and CR) are numbered but not
 *   yielded, so the numbers stay those of the input file.
 * - Bytes stay Buffers until a line is complete, so a multi-byte UTF-8
 *   character split across stream chunks decodes correctly. Memory: one
 *   line plus one stream chunk.
 */
import type { Storage } from '../../common/storage/index.ts';

export interface ChunkLine {
  /** 1-based line number in the input object. */
  line: number;
  /** The line's text, without its line ending. */
  text: string;
}

export interface ChunkRange {
  input: string;
  start: number;
  /** Exclusive. */
  end: number;
  firstLine: number;
}

const LF = 0x0a;
const CR = 0x0d;

function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== CR) return false;
  return true;
}

/** Splits a byte stream into numbered lines (see the module comment). */
export async function* splitLines(source: AsyncIterable<Buffer | string>, firstLine = 1): AsyncGenerator<ChunkLine> {
  let line = firstLine;
  let pending: Buffer[] = [];
  const emit = (bytes: Buffer): ChunkLine | undefined => {
    const n = line++;
    if (isBlank(bytes)) return undefined;
    const end = bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length;
    return { line: n, text: bytes.toString('utf8', 0, end) };
  };
  for await (const piece of source) {
    const buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
    let from = 0;
    for (let at = buf.indexOf(LF); at !== -1; at = buf.indexOf(LF, from)) {
      const part = buf.subarray(from, at);
      const bytes = pending.length === 0 ? part : Buffer.concat([...pending, part]);
      pending = [];
      from = at + 1;
      const out = emit(bytes);
      if (out !== undefined) yield out;
    }
    if (from < buf.length) pending.push(buf.subarray(from));
  }
  if (pending.length > 0) {
    const out = emit(Buffer.concat(pending));
    if (out !== undefined) yield out;
  }
}

/** The lines of one chunk, read with one ranged read (never the whole object). */
export async function* readChunkLines(
  storage: Pick<Storage, 'read'>,
  range: ChunkRange,
  signal?: AbortSignal,
): AsyncGenerator<ChunkLine> {
  if (range.end <= range.start) return;
  const stream = await storage.read(range.input, { start: range.start, end: range.end, signal });
  try {
    yield* splitLines(stream as AsyncIterable<Buffer>, range.firstLine);
  } finally {
    // A consumer that stops early (abort, error) releases the read.
    if (!stream.destroyed) stream.destroy();
  }
}
