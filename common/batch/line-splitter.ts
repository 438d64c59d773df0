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
 * Memory: one line (at most `maxLineBytes`) plus one stream piece. A yielded
 * `text` is a string the caller owns; nothing is shared with the stream.
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

/** Lines of a byte stream with their byte ranges (see the module comment). */
export async function* splitLines(
  source: AsyncIterable<Uint8Array | string>,
  opts: SplitOptions = {},
): AsyncGenerator<SplitLine> {
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  // Infinity is allowed: our own part files are read back without a limit.
  if (!(Number.isSafeInteger(maxLineBytes) || maxLineBytes === Number.POSITIVE_INFINITY) || maxLineBytes < 1) {
    throw new RangeError(`maxLineBytes must be an integer >= 1 or Infinity: ${maxLineBytes}`);
  }
  // A CR that ends a line is its line ending, not content: it may take the line one past the limit.
  const limit = maxLineBytes + 1;
  let line = opts.firstLine ?? 1;
  let offset = opts.startOffset ?? 0; // absolute offset of the current piece's first byte
  let lineStart = offset;
  // The current line's bytes from earlier pieces, while it fits the limit.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  // Over-long line: its bytes are dropped; remember whether they were all blank and the last one.
  let skipping = false;
  let skippedBlank = true;
  let skippedLastCr = false;

  /** Ends the current line at `lineEnd` (its LF or the stream's end); `next` is where the next one starts. */
  const complete = (last: Buffer, lineEnd: number, next: number): SplitLine | undefined => {
    const n = line++;
    const start = lineStart;
    lineStart = next;
    if (!skipping) {
      const bytes = pending.length === 0 ? last : Buffer.concat([...pending, last]);
      pending = [];
      pendingBytes = 0;
      if (blankFrom(bytes, 0, bytes.length)) return undefined;
      const len = bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length;
      if (len <= maxLineBytes) {
        return { kind: 'line', line: n, start, end: start + len, next, text: bytes.toString('utf8', 0, len) };
      }
      return { kind: 'too_long', line: n, start, end: start + len, next };
    }
    skipping = false;
    if (last.length > 0) skippedLastCr = last[last.length - 1] === CR;
    const blank = skippedBlank && blankFrom(last, 0, last.length);
    skippedBlank = true;
    if (blank) return undefined;
    return { kind: 'too_long', line: n, start, end: skippedLastCr ? lineEnd - 1 : lineEnd, next };
  };

  /** Adds a piece of the current line that does not end it. */
  const extend = (part: Buffer): void => {
    if (part.length === 0) return;
    if (!skipping && pendingBytes + part.length > limit) {
      skipping = true;
      skippedBlank = pending.every((p) => blankFrom(p, 0, p.length));
      pending = [];
      pendingBytes = 0;
    }
    if (skipping) {
      skippedBlank = skippedBlank && blankFrom(part, 0, part.length);
      skippedLastCr = part[part.length - 1] === CR;
    } else {
      // A copy: the stream may reuse its buffer after this piece.
      pending.push(Buffer.from(part));
      pendingBytes += part.length;
    }
  };

  for await (const piece of source) {
    const buf =
      typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.length);
    let from = 0;
    for (let at = buf.indexOf(LF); at !== -1; at = buf.indexOf(LF, from)) {
      const out = complete(buf.subarray(from, at), offset + at, offset + at + 1);
      from = at + 1;
      if (out !== undefined) yield out;
    }
    extend(buf.subarray(from));
    offset += buf.length;
  }
  if (skipping || pendingBytes > 0) {
    const out = complete(Buffer.alloc(0), offset, offset);
    if (out !== undefined) yield out;
  }
}
