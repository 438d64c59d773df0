/**
 * Splits a byte stream into lines with their exact byte ranges. The batch
 * planner cuts chunks as byte ranges on line boundaries (so offsets must be
 * byte-exact whatever the text, multi-byte UTF-8 included) and the bulk
 * worker reads those ranges back: both use this one splitter, so they number
 * and classify lines alike:
 * - A line ends at LF. A CR right before the LF (CRLF) is not part of the
 *   line. A lone CR elsewhere is an ordinary byte of its line (treating it as
 *   a line end here would shift every later line number against the worker).
 * - The last line may lack its LF.
 * - A blank line (nothing but spaces, tabs and CR) keeps its number but is not
 *   yielded.
 * - A line longer than `maxLineBytes` is not buffered: its bytes are skipped
 *   up to its LF and it is yielded as `too_long` (still with its range).
 *
 * Memory: one line (at most `maxLineBytes`) plus one stream piece (and, in
 * the array forms, that piece's lines). A yielded `text` is a string the
 * caller owns; nothing is shared with the stream.
 *
 * The work is synchronous (LineSplitter, a piece at a time); the async
 * forms wrap it. Bulk workers take one array of lines per piece
 * (splitLineArrays), so a line costs no await of its own.
 */

export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;

interface LineBase {
  /** 1-based line number in the stream (blank lines count). */
  line: number;
  /** Byte offset of the line's first byte. */
  start: number;
  /** Byte offset one past the line's last byte, its CRLF / LF excluded. */
  end: number;
  /** Byte offset one past the line ending: where the next line starts. */
  next: number;
}

export type SplitLine =
  | (LineBase & { kind: 'line'; /** The line decoded as UTF-8, without its ending. */ text: string })
  | (LineBase & { kind: 'too_long' });

export interface SplitOptions {
  /** Longest line (bytes, line ending excluded) that is buffered and decoded (default 1 MiB). */
  maxLineBytes?: number;
  /** Offset of the stream's first byte (default 0), e.g. for a ranged read. */
  startOffset?: number;
  /** Number of the stream's first line (default 1). */
  firstLine?: number;
}

function blankFrom(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const b = bytes[i];
    if (b !== SPACE && b !== TAB && b !== CR) return false;
  }
  return true;
}

/**
 * The splitter's state between stream pieces: `push` takes each piece and
 * returns the lines it completes, `end` the last line. Synchronous, so a
 * caller can handle a whole piece's lines without an await per line.
 */
export class LineSplitter {
  private readonly maxLineBytes: number;
  /** A CR that ends a line is its line ending, not content: it may take the line one past the limit. */
  private readonly limit: number;
  private line: number;
  /** Absolute offset of the next piece's first byte. */
  private offset: number;
  private lineStart: number;
  /** The current line's bytes from earlier pieces, while it fits the limit. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Over-long line: its bytes are dropped; remember whether they were all blank and the last one. */
  private skipping = false;
  private skippedBlank = true;
  private skippedLastCr = false;

  constructor(opts: SplitOptions = {}) {
    const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    // Infinity is allowed: our own part files are read back without a limit.
    if (!(Number.isSafeInteger(maxLineBytes) || maxLineBytes === Number.POSITIVE_INFINITY) || maxLineBytes < 1) {
      throw new RangeError(`maxLineBytes must be an integer >= 1 or Infinity: ${maxLineBytes}`);
    }
    this.maxLineBytes = maxLineBytes;
    this.limit = maxLineBytes + 1;
    this.line = opts.firstLine ?? 1;
    this.offset = opts.startOffset ?? 0;
    this.lineStart = this.offset;
  }

  /** The lines this piece completes, in order (often several, possibly none). */
  push(piece: Uint8Array | string): SplitLine[] {
    const buf =
      typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.length);
    const out: SplitLine[] = [];
    const offset = this.offset;
    let from = 0;
    for (let at = buf.indexOf(LF); at !== -1; at = buf.indexOf(LF, from)) {
      const l = this.complete(buf, from, at, offset + at, offset + at + 1);
      from = at + 1;
      if (l !== undefined) out.push(l);
    }
    this.extend(buf.subarray(from));
    this.offset += buf.length;
    return out;
  }

  /** The stream ended: its last line, when it lacks an LF. */
  end(): SplitLine | undefined {
    if (!this.skipping && this.pendingBytes === 0) return undefined;
    return this.complete(Buffer.alloc(0), 0, 0, this.offset, this.offset);
  }

  /** Ends the current line with `last[from, to)` at `lineEnd` (its LF or the stream's end); `next` is where the next one starts. */
  private complete(last: Buffer, from: number, to: number, lineEnd: number, next: number): SplitLine | undefined {
    const n = this.line++;
    const start = this.lineStart;
    this.lineStart = next;
    if (!this.skipping) {
      let bytes = last;
      if (this.pending.length > 0) {
        bytes = Buffer.concat([...this.pending, last.subarray(from, to)]);
        from = 0;
        to = bytes.length;
        this.pending = [];
        this.pendingBytes = 0;
      }
      if (blankFrom(bytes, from, to)) return undefined;
      const len = bytes[to - 1] === CR ? to - from - 1 : to - from;
      if (len <= this.maxLineBytes) {
        return { kind: 'line', line: n, start, end: start + len, next, text: bytes.toString('utf8', from, from + len) };
      }
      return { kind: 'too_long', line: n, start, end: start + len, next };
    }
    this.skipping = false;
    if (to > from) this.skippedLastCr = last[to - 1] === CR;
    const blank = this.skippedBlank && blankFrom(last, from, to);
    this.skippedBlank = true;
    if (blank) return undefined;
    return { kind: 'too_long', line: n, start, end: this.skippedLastCr ? lineEnd - 1 : lineEnd, next };
  }

  /** Adds a piece of the current line that does not end it. */
  private extend(part: Buffer): void {
    if (part.length === 0) return;
    if (!this.skipping && this.pendingBytes + part.length > this.limit) {
      this.skipping = true;
      this.skippedBlank = this.pending.every((p) => blankFrom(p, 0, p.length));
      this.pending = [];
      this.pendingBytes = 0;
    }
    if (this.skipping) {
      this.skippedBlank = this.skippedBlank && blankFrom(part, 0, part.length);
      this.skippedLastCr = part[part.length - 1] === CR;
    } else {
      // A copy: the stream may reuse its buffer after this piece.
      this.pending.push(Buffer.from(part));
      this.pendingBytes += part.length;
    }
  }
}

/** The lines of a byte stream, one array per stream piece that completes any (never empty). */
export async function* splitLineArrays(
  source: AsyncIterable<Uint8Array | string>,
  opts: SplitOptions = {},
): AsyncGenerator<SplitLine[]> {
  const splitter = new LineSplitter(opts);
  for await (const piece of source) {
    const lines = splitter.push(piece);
    if (lines.length > 0) yield lines;
  }
  const last = splitter.end();
  if (last !== undefined) yield [last];
}

/** Lines of a byte stream with their byte ranges (see the module comment). */
export async function* splitLines(
  source: AsyncIterable<Uint8Array | string>,
  opts: SplitOptions = {},
): AsyncGenerator<SplitLine> {
  for await (const lines of splitLineArrays(source, opts)) yield* lines;
}
