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
 *   line (at most the limit) plus one stream chunk.
 * - A line over the limit (1 MiB) is reported, not read: the planner counts
 *   it invalid, and the runner writes it to the error part.
 * - The `…Arrays` forms hand over all the lines one stream piece completes
 *   at once (a piece is 64 KiB, so that many bytes of lines at most): the
 *   runner's hot path then pays one await per piece, not several per line.
 */
import {
  DEFAULT_MAX_LINE_BYTES,
  splitLineArrays as splitByteLineArrays,
  type SplitLine,
} from '../../common/batch/line-splitter.ts';
import type { Storage } from '../../common/storage/index.ts';

export interface ChunkLine {
  /** 1-based line number in the input object. */
  line: number;
  /** The line's text, without its line ending; null when it is over the line-length limit (not read). */
  text: string | null;
  /** Byte offset (in the input object) where the next line starts: a chunk that yields resumes there. */
  next: number;
}

export interface ChunkRange {
  input: string;
  start: number;
  /** Exclusive. */
  end: number;
  firstLine: number;
}

const chunkLine = (l: SplitLine): ChunkLine => ({
  line: l.line,
  text: l.kind === 'line' ? l.text : null,
  next: l.next,
});

/**
 * The numbered lines of a byte stream, one array per stream piece that completes any (never empty);
 * `startOffset` is the stream's first byte in its object.
 */
export async function* splitLineArrays(
  source: AsyncIterable<Buffer | string>,
  firstLine = 1,
  maxLineBytes = DEFAULT_MAX_LINE_BYTES,
  startOffset = 0,
): AsyncGenerator<ChunkLine[]> {
  for await (const lines of splitByteLineArrays(source, { firstLine, maxLineBytes, startOffset })) {
    yield lines.map(chunkLine);
  }
}

/**
 * Splits a byte stream into numbered lines with the planner's splitter, so
 * both agree on numbering, blank lines and the line-length limit.
 */
export async function* splitLines(
  source: AsyncIterable<Buffer | string>,
  firstLine = 1,
  maxLineBytes = DEFAULT_MAX_LINE_BYTES,
  startOffset = 0,
): AsyncGenerator<ChunkLine> {
  for await (const lines of splitLineArrays(source, firstLine, maxLineBytes, startOffset)) yield* lines;
}

/** The lines of one chunk, one array per stream piece, read with one ranged read (never the whole object). */
export async function* readChunkLineArrays(
  storage: Pick<Storage, 'read'>,
  range: ChunkRange,
  signal?: AbortSignal,
): AsyncGenerator<ChunkLine[]> {
  if (range.end <= range.start) return;
  const stream = await storage.read(range.input, { start: range.start, end: range.end, signal });
  try {
    yield* splitLineArrays(stream as AsyncIterable<Buffer>, range.firstLine, DEFAULT_MAX_LINE_BYTES, range.start);
  } finally {
    // A consumer that stops early (abort, error) releases the read.
    if (!stream.destroyed) stream.destroy();
  }
}

/** The lines of one chunk, read with one ranged read (never the whole object). */
export async function* readChunkLines(
  storage: Pick<Storage, 'read'>,
  range: ChunkRange,
  signal?: AbortSignal,
): AsyncGenerator<ChunkLine> {
  for await (const lines of readChunkLineArrays(storage, range, signal)) yield* lines;
}
