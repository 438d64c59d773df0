import { describe, expect, it } from 'vitest';
import { splitLines, type SplitLine } from '../../../common/batch/line-splitter.ts';
import { splitLines as workerSplitLines } from '../../../gpu-worker/bulk/chunk-lines.ts';

async function* pieces(parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const part of parts) yield part;
}

async function collect(parts: Buffer[], maxLineBytes?: number): Promise<SplitLine[]> {
  const out: SplitLine[] = [];
  for await (const line of splitLines(pieces(parts), { maxLineBytes })) out.push(line);
  return out;
}

/** The same bytes cut every way that matters: whole, one byte at a time, and in two at each offset. */
function cuts(bytes: Buffer): Buffer[][] {
  const all: Buffer[][] = [[bytes], Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))];
  for (let at = 1; at < bytes.length; at++) all.push([bytes.subarray(0, at), bytes.subarray(at)]);
  return all;
}

const line = (n: number, start: number, end: number, next: number, text: string): SplitLine => ({
  kind: 'line',
  line: n,
  start,
  end,
  next,
  text,
});
const tooLong = (n: number, start: number, end: number, next: number): SplitLine => ({
  kind: 'too_long',
  line: n,
  start,
  end,
  next,
});

const cases: { name: string; input: string; max?: number; expected: SplitLine[] }[] = [
  { name: 'empty input', input: '', expected: [] },
  { name: 'LF lines', input: 'ab\ncd\n', expected: [line(1, 0, 2, 3, 'ab'), line(2, 3, 5, 6, 'cd')] },
  { name: 'CRLF lines', input: 'ab\r\ncd\r\n', expected: [line(1, 0, 2, 4, 'ab'), line(2, 4, 6, 8, 'cd')] },
  { name: 'no final newline', input: 'ab\ncd', expected: [line(1, 0, 2, 3, 'ab'), line(2, 3, 5, 5, 'cd')] },
  { name: 'final CR without LF', input: 'ab\ncd\r', expected: [line(1, 0, 2, 3, 'ab'), line(2, 3, 5, 6, 'cd')] },
  {
    name: 'blank lines keep their numbers',
    input: '\n\r\nab\n \t\n\ncd\n\n',
    expected: [line(3, 3, 5, 6, 'ab'), line(6, 10, 12, 13, 'cd')],
  },
  { name: 'only blank lines', input: '\n  \n\r\n\t', expected: [] },
  {
    name: 'a lone CR stays inside its line (as for the worker)',
    input: 'a\rb\nc\n',
    expected: [line(1, 0, 3, 4, 'a\rb'), line(2, 4, 5, 6, 'c')],
  },
  {
    name: 'multi-byte UTF-8: offsets count bytes',
    input: 'é✓\n😀x\r\nz',
    expected: [line(1, 0, 5, 6, 'é✓'), line(2, 6, 11, 13, '😀x'), line(3, 13, 14, 14, 'z')],
  },
  {
    name: 'an over-long line is reported, not buffered; its neighbours are intact',
    input: 'ok\n0123456789\r\nfine\n',
    max: 8,
    expected: [line(1, 0, 2, 3, 'ok'), tooLong(2, 3, 13, 15), line(3, 15, 19, 20, 'fine')],
  },
  {
    name: 'a line exactly at the limit, with CRLF, is not too long',
    input: '01234567\r\n012345678\n',
    max: 8,
    expected: [line(1, 0, 8, 10, '01234567'), tooLong(2, 10, 19, 20)],
  },
  {
    name: 'an over-long last line without LF',
    input: 'a\n0123456789',
    max: 4,
    expected: [line(1, 0, 1, 2, 'a'), tooLong(2, 2, 12, 12)],
  },
  {
    name: 'an over-long blank line is still blank',
    input: '          \nx\n',
    max: 4,
    expected: [line(2, 11, 12, 13, 'x')],
  },
];

describe('splitLines (planner)', () => {
  for (const c of cases) {
    it(c.name, async () => {
      for (const parts of cuts(Buffer.from(c.input))) {
        expect(await collect(parts, c.max)).toEqual(c.expected);
      }
    });
  }

  it('ranges read back the exact line bytes', async () => {
    const bytes = Buffer.from('{"a":"é"}\r\n\n  {"b":"😀"}\nlast ✓');
    for (const l of await collect([bytes])) {
      if (l.kind === 'line') expect(bytes.subarray(l.start, l.end).toString()).toBe(l.text);
    }
  });

  it('honours startOffset and firstLine (a ranged read)', async () => {
    const out: SplitLine[] = [];
    for await (const l of splitLines(pieces([Buffer.from('x\ny')]), { startOffset: 100, firstLine: 7 })) out.push(l);
    expect(out).toEqual([line(7, 100, 101, 102, 'x'), line(8, 102, 103, 103, 'y')]);
  });

  it('agrees with the bulk worker on line numbers and texts', async () => {
    const input = Buffer.from('a\r\n\n \t\r\nb\rc\n😀\r\n\r\nlast\r');
    const mine = (await collect([input])).map((l) => ({ line: l.line, text: l.kind === 'line' ? l.text : null }));
    const theirs: { line: number; text: string | null }[] = [];
    for await (const { line, text } of workerSplitLines(pieces([input]))) theirs.push({ line, text });
    expect(mine).toEqual(theirs);
  });

  it('rejects a bad maxLineBytes', async () => {
    await expect(collect([Buffer.from('x')], 0)).rejects.toThrow(RangeError);
  });
});
