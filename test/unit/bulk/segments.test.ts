/** A chunk job along its segments (pure), and a segment written twice over one range (file:// storage). */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { segmentPartUris, type ChunkSegment } from '../../../common/contracts/batch.ts';
import { createFileStorage } from '../../../common/storage/index.ts';
import { createEchoBackend } from '../../../gpu-worker/backends/echo.ts';
import { runChunk } from '../../../gpu-worker/bulk/chunk-runner.ts';
import {
  afterSegment,
  lastPartUris,
  plannedRange,
  resumeJob,
  segmentTotals,
} from '../../../gpu-worker/bulk/segments.ts';
import { chunkJob, readPart, sentimentLine, tempDir, writeInput, type TempDir } from './fixtures.ts';

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await dir.remove();
});

const seg = (start: number, end: number, nextLine: number, lines: number, failed = 0): ChunkSegment => ({
  start,
  end,
  nextLine,
  lines,
  completed: lines - failed,
  failed,
});

describe('segments', () => {
  it('moves a job past its segments, keeps its planned range, and names its last part by range', async () => {
    const input = await writeInput(
      dir,
      'in.jsonl',
      ['a', 'b', 'c', 'd', 'e'].map((c) => sentimentLine(c, c)),
    );
    const job = chunkJob(dir, input, { from: 1, to: 5, index: 7 });
    expect(lastPartUris(job)).toEqual({ outputPart: job.outputPart, errorPart: job.errorPart });
    const o = input.offsets;
    const one = afterSegment(job, seg(o[1]!, o[2]!, 3, 1));
    expect(one.chunk).toMatchObject({ start: o[2], end: o[5], firstLine: 3, lines: 3 });
    const two = afterSegment(one, seg(o[2]!, o[4]!, 5, 2, 1));
    expect(two.chunk).toMatchObject({ start: o[4], firstLine: 5, lines: 1 });
    expect(two.segments).toHaveLength(2);
    expect(plannedRange(two)).toEqual({ start: o[1], lines: 4 });
    expect(segmentTotals(two.segments!)).toEqual({ completed: 2, failed: 1 });
    expect(lastPartUris(two).outputPart).toBe(job.outputPart.replace(/\.jsonl$/, `-${o[4]}-${o[5]}.jsonl`));
    expect(lastPartUris(two).errorPart).toMatch(new RegExp(`/parts/error-00000007-${o[4]}-${o[5]}\\.jsonl$`));
    // The batch's record wins over job data that lags it; a record no longer than the job's changes nothing.
    expect(resumeJob(one, two.segments!)).toEqual(two);
    expect(resumeJob(two, two.segments!.slice(0, 1))).toBe(two);
  });

  it('a segment whose output part an earlier run left behind (crash before its error part): stored wins', async () => {
    const lines = Array.from({ length: 10 }, (_, i) => sentimentLine(`s-${i}`, `t ${i}`));
    const input = await writeInput(dir, 'crash.jsonl', lines);
    const job = chunkJob(dir, input, { index: 3 });
    const yieldAfter = async (n: number) => {
      const ac = new AbortController();
      return runChunk(job, {
        storage: createFileStorage(),
        backend: createEchoBackend(),
        batchSize: 1,
        signal: ac.signal,
        onProgress: (d) => d === n && ac.abort(),
      });
    };
    const first = await yieldAfter(4);
    const uris = segmentPartUris(job, first.segment!.start, first.segment!.end);
    // The earlier run died between its writes, its output part lacking s-1 (failed then).
    const stored = (await readFile(new URL(uris.outputPart), 'utf8')).split('\n').filter((l) => !l.includes('"s-1"'));
    await writeFile(new URL(uris.outputPart), stored.join('\n'));
    await rm(new URL(uris.errorPart));
    const again = await yieldAfter(4);
    expect(again.segment).toEqual({ ...first.segment, completed: 3, failed: 1 });
    expect(((await readPart(uris.errorPart)) ?? []).map((l) => (l as { custom_id: string }).custom_id)).toEqual([
      's-1',
    ]);
  });
});
