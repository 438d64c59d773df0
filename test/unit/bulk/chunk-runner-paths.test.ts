/**
 * The runner's faster per-line path: lines arrive one stream piece at a
 * time, micro-batches straddle pieces, results go straight into part
 * buffers, and the reconciliation reads custom_ids back from those buffers.
 * These cases run chunks large enough to span many 64 KiB pieces.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchErrorLineSchema, batchOutputLineSchema, segmentPartUris } from '../../../common/contracts/batch.ts';
import { createFileStorage } from '../../../common/storage/index.ts';
import type { ModelBackend } from '../../../gpu-worker/backends/backend.ts';
import { createEchoBackend } from '../../../gpu-worker/backends/echo.ts';
import { runChunk } from '../../../gpu-worker/bulk/chunk-runner.ts';
import { afterSegment, lastPartUris } from '../../../gpu-worker/bulk/segments.ts';
import { chunkJob, exists, inputLine, readPart, sentimentLine, tempDir, writeInput, type TempDir } from './fixtures.ts';

const storage = createFileStorage();
let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await dir.remove();
});

/** 3,000 lines (~400 KiB): mostly valid, with invalid, blank, duplicate and failing ones mixed in. */
function mixedLines(): { lines: string[]; duplicates: number[] } {
  const lines: string[] = [];
  const duplicates: number[] = [];
  for (let i = 0; i < 3000; i++) {
    if (i % 101 === 5) lines.push('{"custom_id": broken');
    else if (i % 97 === 7) lines.push('   ');
    else if (i % 89 === 9) {
      lines.push(sentimentLine('dup-0', 'again'));
      duplicates.push(i + 1);
    } else if (i % 83 === 11) lines.push(inputLine(`empty-${i}`, { input: { task: 'sentiment', text: '' } }));
    else
      lines.push(
        sentimentLine(`r-${i}-é😀`, `${'fail '.repeat(i % 113 === 13 ? 1 : 0)}text ${'ü'.repeat(i % 90)} ${i}`),
      );
  }
  return { lines, duplicates };
}

/** Echo, except that a text starting with "fail" fails on its own. */
function failingEcho(): ModelBackend {
  const echo = createEchoBackend();
  return {
    ...echo,
    runMany: async (inputs, opts) =>
      (await echo.runMany!(inputs, opts)).map((out, i) => {
        const input = inputs[i]!;
        return input.task === 'sentiment' && input.text.startsWith('fail') ? new Error('model exploded') : out;
      }),
  };
}

/** What each non-blank line should give: ['ok', custom_id] or [code, custom_id]. */
function expected(lines: readonly string[], duplicates: readonly number[]) {
  const out: Array<{ line: number; kind: string; customId: string | null }> = [];
  lines.forEach((text, i) => {
    const line = i + 1;
    if (text.trim() === '') return;
    if (text.startsWith('{"custom_id": broken')) out.push({ line, kind: 'invalid_json', customId: null });
    else {
      const { custom_id: customId, body } = JSON.parse(text) as {
        custom_id: string;
        body: { input: { text: string } };
      };
      if (duplicates.includes(line)) out.push({ line, kind: 'duplicate_custom_id', customId });
      else if (body.input.text === '') out.push({ line, kind: 'invalid_request', customId });
      else if (body.input.text.startsWith('fail')) out.push({ line, kind: 'backend_failed', customId });
      else out.push({ line, kind: 'ok', customId });
    }
  });
  return out;
}

describe('runChunk over many stream pieces', () => {
  it('puts every line in the right part, in order, with micro-batches straddling pieces', async () => {
    const { lines, duplicates } = mixedLines();
    const input = await writeInput(dir, 'mixed.jsonl', lines);
    const job = chunkJob(dir, input, { index: 1, duplicateLines: duplicates });
    const progress: number[] = [];
    const result = await runChunk(job, {
      storage,
      backend: failingEcho(),
      batchSize: 7,
      onProgress: (n) => progress.push(n),
    });
    const want = expected(lines, duplicates);
    const ok = want.filter((w) => w.kind === 'ok');
    expect(result).toEqual({
      status: 'done',
      completed: ok.length,
      failed: want.length - ok.length,
      processedLines: want.length,
    });
    expect(progress).toEqual(
      Array.from({ length: Math.ceil(want.length / 7) }, (_, i) => Math.min(want.length, (i + 1) * 7)),
    );
    const out = ((await readPart(job.outputPart)) ?? []).map((l) => batchOutputLineSchema.parse(l));
    expect(out.map((o) => [o.id, o.custom_id])).toEqual(
      ok.map((w) => [`batch_req_b1_${job.chunk.index}_${w.line}`, w.customId]),
    );
    const errs = ((await readPart(job.errorPart)) ?? []).map((l) => batchErrorLineSchema.parse(l));
    expect(errs.map((e) => ({ line: e.line, kind: e.error.code, customId: e.custom_id }))).toEqual(
      want.filter((w) => w.kind !== 'ok'),
    );
  });

  it('reconciles against a stored output part, reading custom_ids back byte-exactly', async () => {
    const { lines, duplicates } = mixedLines();
    const input = await writeInput(dir, 'reconcile.jsonl', lines);
    const full = chunkJob(dir, input, { index: 2, duplicateLines: duplicates });
    await runChunk(full, { storage, backend: failingEcho() });
    // An earlier attempt's output part: every third success only.
    const stored = (await readFile(new URL(full.outputPart), 'utf8'))
      .split('\n')
      .filter((l, i) => l !== '' && i % 3 === 0);
    const job = chunkJob(dir, input, { index: 3, duplicateLines: duplicates });
    await storage.writeIfAbsent(job.outputPart, Buffer.from(stored.map((l) => `${l}\n`).join('')));

    const result = await runChunk(job, { storage, backend: failingEcho(), batchSize: 64 });
    const want = expected(lines, duplicates);
    expect(result).toEqual({
      status: 'done',
      completed: stored.length,
      failed: want.length - stored.length,
      processedLines: want.length,
    });
    const keptIds = new Set(stored.map((l) => batchOutputLineSchema.parse(JSON.parse(l)).id));
    const errs = ((await readPart(job.errorPart)) ?? []).map((l) => batchErrorLineSchema.parse(l));
    expect(errs.map((e) => ({ line: e.line, kind: e.error.code, customId: e.custom_id }))).toEqual(
      want
        .filter((w) => !keptIds.has(`batch_req_b1_${job.chunk.index}_${w.line}`))
        .map((w) => ({ ...w, kind: w.kind === 'ok' ? 'backend_failed' : w.kind })),
    );
  });

  it('yields mid-piece on abort into a segment of the micro-batches done; the resumed rest completes the chunk', async () => {
    const { lines, duplicates } = mixedLines();
    const input = await writeInput(dir, 'abort.jsonl', lines);
    const job = chunkJob(dir, input, { index: 4, duplicateLines: duplicates });
    const ac = new AbortController();
    const result = await runChunk(job, {
      storage,
      backend: failingEcho(),
      batchSize: 5,
      signal: ac.signal,
      onProgress: (n) => {
        if (n === 1000) ac.abort(new Error('preempted'));
      },
    });
    const want = expected(lines, duplicates);
    const firstThousand = want.slice(0, 1000);
    const ok = firstThousand.filter((w) => w.kind === 'ok').length;
    expect(result).toMatchObject({ status: 'yielded', completed: ok, failed: 1000 - ok, processedLines: 1000 });
    const seg = result.segment!;
    // The segment ends where the line after its last finished one starts (blank lines included in the rest).
    expect(seg).toEqual({
      start: 0,
      end: input.offsets[firstThousand[999]!.line]!,
      nextLine: firstThousand[999]!.line + 1,
      lines: 1000,
      completed: ok,
      failed: 1000 - ok,
    });
    expect(await exists(job.outputPart)).toBe(false);

    const rest = afterSegment(job, seg);
    const done = await runChunk(rest, { storage, backend: failingEcho(), batchSize: 5 });
    expect(done.processedLines).toBe(want.length - 1000);
    // Segment then last part, each in input order: every line exactly once, in the right file.
    const segParts = segmentPartUris(job, seg.start, seg.end);
    const last = lastPartUris(rest);
    const outIds = [...((await readPart(segParts.outputPart)) ?? []), ...((await readPart(last.outputPart)) ?? [])].map(
      (l) => batchOutputLineSchema.parse(l).custom_id,
    );
    const errLines = [...((await readPart(segParts.errorPart)) ?? []), ...((await readPart(last.errorPart)) ?? [])].map(
      (l) => batchErrorLineSchema.parse(l),
    );
    expect(outIds).toEqual(want.filter((w) => w.kind === 'ok').map((w) => w.customId));
    expect(errLines.map((e) => ({ line: e.line, kind: e.error.code, customId: e.custom_id }))).toEqual(
      want.filter((w) => w.kind !== 'ok'),
    );
  });
});
