import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileStorage } from '../../../common/storage/index.ts';
import { readChunkLines, splitLines, type ChunkLine } from '../../../gpu-worker/bulk/chunk-lines.ts';
import { tempDir, writeInput, type TempDir } from './fixtures.ts';

async function collect(source: AsyncIterable<ChunkLine>): Promise<ChunkLine[]> {
  const out: ChunkLine[] = [];
  for await (const line of source) out.push(line);
  return out;
}

async function* pieces(...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const part of parts) yield part;
}

describe('splitLines', () => {
  it('numbers lines from firstLine, skips blank ones but counts them, handles LF and CRLF, says where the next starts', async () => {
    const text = 'a\r\n\r\nb\n   \n\tc\r\nd';
    expect(await collect(splitLines(pieces(Buffer.from(text)), 10))).toEqual([
      { line: 10, text: 'a', next: 3 },
      { line: 12, text: 'b', next: 7 },
      { line: 14, text: '\tc', next: 15 },
      { line: 15, text: 'd', next: 16 },
    ]);
  });

  it('joins a line split across stream chunks, even inside a multi-byte character', async () => {
    const bytes = Buffer.from('héllo wörld ✓\nnext\n');
    const chunks = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)); // one byte at a time
    expect(await collect(splitLines(pieces(...chunks)))).toEqual([
      { line: 1, text: 'héllo wörld ✓', next: 18 },
      { line: 2, text: 'next', next: 23 },
    ]);
  });

  it('yields nothing for an empty stream', async () => {
    expect(await collect(splitLines(pieces()))).toEqual([]);
  });
});

describe('readChunkLines', () => {
  let dir: TempDir;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await dir.remove();
  });

  it('reads only the byte range of a chunk in the middle of the object', async () => {
    const lines = ['one', 'two', '', 'four', 'five', 'six'];
    const input = await writeInput(dir, 'in.jsonl', lines, '\r\n');
    const got = await collect(
      readChunkLines(createFileStorage(), {
        input: input.uri,
        start: input.offsets[1]!,
        end: input.offsets[5]!,
        firstLine: 2,
      }),
    );
    expect(got).toEqual([
      { line: 2, text: 'two', next: input.offsets[2] },
      { line: 4, text: 'four', next: input.offsets[4] },
      { line: 5, text: 'five', next: input.offsets[5] },
    ]);
  });

  it('reads nothing for an empty range', async () => {
    const input = await writeInput(dir, 'empty-range.jsonl', ['x']);
    const got = await collect(
      readChunkLines(createFileStorage(), { input: input.uri, start: 0, end: 0, firstLine: 1 }),
    );
    expect(got).toEqual([]);
  });
});
