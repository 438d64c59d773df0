/**
 * The splitter now works a stream piece at a time (LineSplitter), and the
 * runner takes lines as one array per piece. Seeded random inputs, cut into
 * random pieces, must give the lines a naive whole-buffer reference gives,
 * through every form: splitLines, splitLineArrays, and the worker's
 * splitLines / splitLineArrays / readChunkLineArrays.
 */
import { writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  LineSplitter,
  splitLineArrays as splitByteLineArrays,
  splitLines,
  type SplitLine,
} from '../../../common/batch/line-splitter.ts';
import { createFileStorage } from '../../../common/storage/index.ts';
import {
  readChunkLineArrays,
  splitLineArrays,
  splitLines as workerSplitLines,
  type ChunkLine,
} from '../../../gpu-worker/bulk/chunk-lines.ts';
import { tempDir } from './fixtures.ts';

/** The splitter's rules applied to a whole buffer at once (see line-splitter.ts's module comment). */
function reference(bytes: Buffer, maxLineBytes: number, firstLine: number, startOffset: number): SplitLine[] {
  const out: SplitLine[] = [];
  let line = firstLine;
  let from = 0;
  while (from < bytes.length) {
    const lf = bytes.indexOf(0x0a, from);
    const lineEnd = lf === -1 ? bytes.length : lf;
    const next = lf === -1 ? bytes.length : lf + 1;
    const content = bytes.subarray(from, lineEnd);
    const blank = content.every((b) => b === 0x20 || b === 0x09 || b === 0x0d);
    const len = content.at(-1) === 0x0d ? content.length - 1 : content.length;
    const base = { line, start: startOffset + from, end: startOffset + from + len, next: startOffset + next };
    if (!blank) {
      out.push(
        len <= maxLineBytes
          ? { kind: 'line', ...base, text: content.toString('utf8', 0, len) }
          : { kind: 'too_long', ...base },
      );
    }
    line++;
    from = next;
  }
  return out;
}

function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

const alphabet = ['a', 'b', ' ', '\t', '\r', '\n', '\r\n', 'é', '€', '😀', '{"x":1}'];

function* cases(n: number) {
  const rnd = random(7);
  for (let i = 0; i < n; i++) {
    const parts = Array.from({ length: Math.floor(rnd() * 30) }, () => alphabet[Math.floor(rnd() * alphabet.length)]);
    const bytes = Buffer.from(parts.join(''));
    const cuts = Array.from({ length: Math.floor(rnd() * 6) }, () => Math.floor(rnd() * (bytes.length + 1)));
    const pieces: Buffer[] = [];
    let from = 0;
    for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
      pieces.push(bytes.subarray(from, cut));
      from = cut;
    }
    pieces.push(bytes.subarray(from));
    yield { bytes, pieces, maxLineBytes: 1 + Math.floor(rnd() * 10) };
  }
}

async function* stream(pieces: readonly Buffer[]): AsyncGenerator<Buffer> {
  yield* pieces;
}

async function collect<T>(source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of source) out.push(item);
  return out;
}

const asChunkLine = (l: SplitLine): ChunkLine => ({
  line: l.line,
  text: l.kind === 'line' ? l.text : null,
  next: l.next,
});

describe('line splitting a piece at a time', () => {
  it('agrees with a whole-buffer reference over 3,000 random inputs and piece cuts', async () => {
    for (const { bytes, pieces, maxLineBytes } of cases(3000)) {
      const want = reference(bytes, maxLineBytes, 3, 100);
      const opts = { maxLineBytes, firstLine: 3, startOffset: 100 };
      expect(await collect(splitLines(stream(pieces), opts))).toEqual(want);
      const batches = await collect(splitByteLineArrays(stream(pieces), opts));
      expect(batches.every((b) => b.length > 0)).toBe(true);
      expect(batches.flat()).toEqual(want);

      const splitter = new LineSplitter(opts);
      const direct = pieces.flatMap((p) => splitter.push(p));
      const last = splitter.end();
      expect(last === undefined ? direct : [...direct, last]).toEqual(want);

      const chunkLines = reference(bytes, maxLineBytes, 3, 0).map(asChunkLine);
      expect(await collect(workerSplitLines(stream(pieces), 3, maxLineBytes))).toEqual(chunkLines);
      expect((await collect(splitLineArrays(stream(pieces), 3, maxLineBytes))).flat()).toEqual(chunkLines);
    }
  });

  it('checks maxLineBytes when the splitter is made', () => {
    expect(() => new LineSplitter({ maxLineBytes: 0 })).toThrow(RangeError);
    expect(() => new LineSplitter({ maxLineBytes: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it('reads a chunk as arrays of lines, one per stream piece, numbered from its first line', async () => {
    const dir = await tempDir();
    try {
      const lines = Array.from({ length: 5000 }, (_, i) =>
        i % 7 === 3 ? '  ' : `{"n":${i},"t":"${'é'.repeat(i % 40)}"}`,
      );
      const text = `${lines.join('\r\n')}\r\n`;
      await writeFile(new URL(dir.uri('in.jsonl')), text);
      const start = Buffer.byteLength(
        lines
          .slice(0, 100)
          .map((l) => `${l}\r\n`)
          .join(''),
      );
      const end = Buffer.byteLength(text);
      const arrays = await collect(
        readChunkLineArrays(createFileStorage(), { input: dir.uri('in.jsonl'), start, end, firstLine: 101 }),
      );
      expect(arrays.length).toBeGreaterThan(1); // more than one 64 KiB piece
      const want = reference(Buffer.from(text).subarray(start), 1024 * 1024, 101, start).map(asChunkLine);
      expect(arrays.flat()).toEqual(want);
    } finally {
      await dir.remove();
    }
  });
});
