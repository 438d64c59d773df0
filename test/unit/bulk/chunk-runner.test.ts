import { readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../../common/config.ts';
import {
  batchErrorLineSchema,
  batchOutputLineSchema,
  segmentPartUris,
  type BatchOutputLine,
} from '../../../common/contracts/batch.ts';
import type { TaskInput } from '../../../common/contracts/tasks.ts';
import { createFileStorage } from '../../../common/storage/index.ts';
import type { ModelBackend } from '../../../gpu-worker/backends/backend.ts';
import { createEchoBackend } from '../../../gpu-worker/backends/echo.ts';
import { createBackend } from '../../../gpu-worker/backends/registry.ts';
import { runChunk } from '../../../gpu-worker/bulk/chunk-runner.ts';
import { afterSegment, lastPartUris } from '../../../gpu-worker/bulk/segments.ts';
import { chunkJob, exists, inputLine, readPart, sentimentLine, tempDir, writeInput, type TempDir } from './fixtures.ts';

const storage = createFileStorage();
let dir: TempDir;
let embedded: ModelBackend;

beforeAll(async () => {
  dir = await tempDir();
  const config = parseConfig({}, 'pools: [{ name: test, backend: embedded, defaultMaxTokens: 8 }]');
  embedded = await createBackend(config.pools[0]!, { concurrency: 2 });
});
afterAll(async () => {
  await embedded.close();
  await dir.remove();
});

const outputs = async (uri: string) => ((await readPart(uri)) ?? []).map((l) => batchOutputLineSchema.parse(l));
const errors = async (uri: string) => ((await readPart(uri)) ?? []).map((l) => batchErrorLineSchema.parse(l));

const texts = [
  'What a wonderful day!',
  'This is terrible and awful.',
  'The box is on the table.',
  'I love it',
  'I hate it',
];

describe('embedded runMany', () => {
  it('runs mixed tasks in one call, results in input order', async () => {
    const out = await embedded.runMany!(
      [
        { task: 'sentiment', text: 'What a wonderful day!' },
        { task: 'chat', messages: [{ role: 'user', content: 'Once' }], maxTokens: 3 },
        { task: 'summarize', text: 'A cat. A dog. A cat and a dog.', maxSentences: 1 },
        { task: 'sentiment', text: 'This is terrible.' },
        { task: 'chat', messages: [{ role: 'user', content: 'Tom' }], maxTokens: 2 },
        { task: 'chat', messages: [{ role: 'user', content: 'Lily' }], maxTokens: 2 },
      ],
      { signal: new AbortController().signal },
    );
    expect(out).toMatchObject([
      { task: 'sentiment', label: 'positive' },
      { task: 'chat', usage: { completionTokens: 3 } },
      { task: 'summarize' },
      { task: 'sentiment', label: 'negative' },
      { task: 'chat', usage: { completionTokens: 2 } },
      { task: 'chat', usage: { completionTokens: 2 } },
    ]);
  });

  it('rejects with the signal reason when aborted', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    const running = embedded.runMany!(
      [{ task: 'chat', messages: [{ role: 'user', content: 'Once' }], maxTokens: 30_000 }],
      { signal: ac.signal },
    );
    setTimeout(() => ac.abort(reason), 20);
    await expect(running).rejects.toBe(reason);
  });
});

describe('runChunk', () => {
  it('runs /v1/infer sentiment lines through the embedded backend: every custom_id once, in order', async () => {
    const lines = Array.from({ length: 150 }, (_, i) => sentimentLine(`req-${i}`, texts[i % texts.length]!));
    const input = await writeInput(dir, 'sentiment.jsonl', lines);
    const job = chunkJob(dir, input, { index: 1 });
    const progress: number[] = [];
    const result = await runChunk(job, {
      storage,
      backend: embedded,
      batchSize: 64,
      onProgress: (n) => progress.push(n),
    });
    expect(result).toEqual({ status: 'done', completed: 150, failed: 0, processedLines: 150 });
    expect(progress).toEqual([64, 128, 150]);
    const out = await outputs(job.outputPart);
    expect(out.map((o) => o.custom_id)).toEqual(lines.map((_, i) => `req-${i}`));
    expect(new Set(out.map((o) => o.id)).size).toBe(150);
    for (const o of out) {
      expect(o.error).toBeNull();
      expect(o.response?.status_code).toBe(200);
      expect(o.response?.body).toMatchObject({ model: 'test', output: { task: 'sentiment' } });
    }
    expect((out[0]!.response!.body as { output: { label: string } }).output.label).toBe('positive');
    expect((out[1]!.response!.body as { output: { label: string } }).output.label).toBe('negative');
    expect(await readPart(job.errorPart)).toEqual([]); // written even when empty: the chunk is observably done
  });

  it('sends invalid JSON, invalid bodies and duplicate custom_ids to the error part with their line numbers', async () => {
    const lines = [
      sentimentLine('a', 'good'), // 1
      '{not json', // 2
      '', // 3: blank, numbered, skipped
      inputLine('b', { input: { task: 'sentiment', text: '' } }), // 4: empty text
      sentimentLine('a', 'again'), // 5: duplicate of line 1
      inputLine('c', { input: { task: 'sentiment', text: 'x' } }, '/v1/chat/completions'), // 6: wrong endpoint
      sentimentLine('d', 'fine'), // 7
    ];
    const input = await writeInput(dir, 'bad.jsonl', lines, '\r\n');
    const job = chunkJob(dir, input, { index: 2, duplicateLines: [5] });
    const result = await runChunk(job, { storage, backend: embedded });
    expect(result).toEqual({ status: 'done', completed: 2, failed: 4, processedLines: 6 });
    expect((await outputs(job.outputPart)).map((o) => o.custom_id)).toEqual(['a', 'd']);
    const errs = await errors(job.errorPart);
    expect(errs.map((e) => [e.line, e.custom_id, e.error.code])).toEqual([
      [2, null, 'invalid_json'],
      [4, 'b', 'invalid_request'],
      [5, 'a', 'duplicate_custom_id'],
      [6, 'c', 'invalid_request'],
    ]);
    expect(errs[1]!.error.message).toContain('body.input.text');
  });

  it('runs a chunk twice: the second run is already_done and leaves the parts unchanged', async () => {
    const input = await writeInput(dir, 'twice.jsonl', [sentimentLine('x', 'nice'), '{', sentimentLine('y', 'bad')]);
    const job = chunkJob(dir, input, { index: 3 });
    const first = await runChunk(job, { storage, backend: embedded });
    const before = [await readFile(new URL(job.outputPart)), await readFile(new URL(job.errorPart))];
    const run = vi.spyOn(embedded, 'runMany');
    const second = await runChunk(job, { storage, backend: embedded });
    expect(run).not.toHaveBeenCalled();
    run.mockRestore();
    expect(first).toEqual({ status: 'done', completed: 2, failed: 1, processedLines: 3 });
    expect(second).toEqual({ ...first, status: 'already_done' });
    expect([await readFile(new URL(job.outputPart)), await readFile(new URL(job.errorPart))]).toEqual(before);
  });

  it('after a crash between the two writes, keeps the stored output part and reconciles the error part with it', async () => {
    const lines = [sentimentLine('p', 'good'), sentimentLine('q', 'bad'), sentimentLine('r', 'meh')];
    const input = await writeInput(dir, 'crash.jsonl', lines);
    const job = chunkJob(dir, input, { index: 4 });
    // An earlier attempt wrote an output part in which q had failed, then died before the error part.
    const full = await runChunk(chunkJob(dir, input, { index: 40 }), { storage, backend: embedded });
    expect(full.status).toBe('done');
    const earlier = (await readFile(new URL(chunkJob(dir, input, { index: 40 }).outputPart), 'utf8'))
      .split('\n')
      .filter((l) => l !== '' && !l.includes('"custom_id":"q"'))
      .map((l) => l.replaceAll('b1_40_', 'b1_4_')); // as chunk 4 itself would have written them
    await storage.writeIfAbsent(job.outputPart, Buffer.from(earlier.map((l) => `${l}\n`).join('')));

    const result = await runChunk(job, { storage, backend: embedded });
    expect(result).toEqual({ status: 'done', completed: 2, failed: 1, processedLines: 3 });
    expect((await outputs(job.outputPart)).map((o) => o.custom_id)).toEqual(['p', 'r']);
    const errs = await errors(job.errorPart);
    expect(errs.map((e) => [e.line, e.custom_id, e.error.code])).toEqual([[2, 'q', 'backend_failed']]);
  });

  it('reads only its lines when the chunk is in the middle of the file', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => sentimentLine(`m-${i + 1}`, texts[i % 5]!));
    const input = await writeInput(dir, 'middle.jsonl', lines);
    const job = chunkJob(dir, input, { index: 5, from: 10, to: 20 });
    const result = await runChunk(job, { storage, backend: embedded, batchSize: 4 });
    expect(result).toMatchObject({ status: 'done', completed: 10, processedLines: 10 });
    const out = await outputs(job.outputPart);
    expect(out.map((o) => o.custom_id)).toEqual(Array.from({ length: 10 }, (_, i) => `m-${i + 11}`));
    expect(out[0]!.id).toBe('batch_req_b1_5_11');
  });

  it('runs chat lines through the embedded LLM into OpenAI chat.completion bodies', async () => {
    const lines = Array.from({ length: 3 }, (_, i) =>
      inputLine(
        `chat-${i}`,
        { model: 'test', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 5 },
        '/v1/chat/completions',
      ),
    );
    const input = await writeInput(dir, 'chat.jsonl', lines);
    const job = chunkJob(dir, input, { index: 6, endpoint: '/v1/chat/completions' });
    const result = await runChunk(job, { storage, backend: embedded, now: () => 1_700_000_000_000 });
    expect(result).toEqual({ status: 'done', completed: 3, failed: 0, processedLines: 3 });
    const out = await outputs(job.outputPart);
    expect(out.map((o) => o.custom_id)).toEqual(['chat-0', 'chat-1', 'chat-2']);
    for (const o of out) {
      expect(o.response!.body).toMatchObject({
        id: expect.stringMatching(/^chatcmpl-/),
        object: 'chat.completion',
        created: 1_700_000_000,
        model: 'test',
        choices: [{ index: 0, message: { role: 'assistant', content: expect.any(String) }, finish_reason: 'length' }],
        usage: { completion_tokens: 5 },
      });
    }
  });

  it('puts a per-record backend failure in the error part (as OpenAI does), the rest in the output part', async () => {
    const echo = createEchoBackend();
    const failing: ModelBackend = {
      ...echo,
      runMany: async (inputs, opts) =>
        (await echo.runMany!(inputs, opts)).map((o, i) => (i === 1 ? new Error('model exploded') : o)),
    };
    const input = await writeInput(dir, 'fail.jsonl', [sentimentLine('ok1', 'a'), sentimentLine('ko', 'b')]);
    const job = chunkJob(dir, input, { index: 7 });
    expect(await runChunk(job, { storage, backend: failing })).toEqual({
      status: 'done',
      completed: 1,
      failed: 1,
      processedLines: 2,
    });
    const [err] = (await readPart(job.errorPart))!;
    // The line satisfies both the error-line contract and OpenAI's error-file line format.
    expect(batchErrorLineSchema.parse(err)).toMatchObject({
      line: 2,
      custom_id: 'ko',
      error: { code: 'backend_failed' },
    });
    expect(batchOutputLineSchema.parse(err)).toMatchObject<Partial<BatchOutputLine>>({
      id: 'batch_req_b1_7_2',
      response: null,
      error: { code: 'backend_failed', message: 'model exploded' },
    });
  });

  it('reports unsupported tasks without running them', async () => {
    const echo = createEchoBackend();
    const chatOnly: ModelBackend = { ...echo, tasks: new Set(['chat']) };
    const input = await writeInput(dir, 'unsupported.jsonl', [sentimentLine('s', 'a')]);
    const job = chunkJob(dir, input, { index: 8 });
    expect(await runChunk(job, { storage, backend: chatOnly })).toMatchObject({ completed: 0, failed: 1 });
    expect((await errors(job.errorPart))[0]!.error.code).toBe('unsupported_task');
  });

  it('yields on abort at a record boundary, keeping the finished lines as a segment; the rest resumes', async () => {
    const lines = Array.from({ length: 100 }, (_, i) => sentimentLine(`y-${i}`, 'text'));
    const input = await writeInput(dir, 'abort.jsonl', lines);
    const job = chunkJob(dir, input, { index: 9 });
    const ac = new AbortController();
    const result = await runChunk(job, {
      storage,
      backend: createEchoBackend(),
      batchSize: 10,
      signal: ac.signal,
      onProgress: (done) => {
        if (done === 30) ac.abort(new Error('preempted'));
      },
    });
    const segment = { start: 0, end: input.offsets[30]!, nextLine: 31, lines: 30, completed: 30, failed: 0 };
    expect(result).toEqual({ status: 'yielded', completed: 30, failed: 0, processedLines: 30, segment });
    expect(await exists(job.outputPart)).toBe(false);
    const seg = segmentPartUris(job, 0, input.offsets[30]!);
    expect(seg.outputPart).toMatch(new RegExp(`/parts/output-00000009-0-${input.offsets[30]}\\.jsonl$`));
    expect((await outputs(seg.outputPart)).map((o) => o.custom_id)).toEqual(lines.slice(0, 30).map((_, i) => `y-${i}`));
    expect(await readPart(seg.errorPart)).toEqual([]);
    // Run again later from where the segment ends: the last part holds the other 70.
    const rest = afterSegment(job, result.segment!);
    expect(await runChunk(rest, { storage, backend: createEchoBackend() })).toMatchObject({
      status: 'done',
      completed: 70,
    });
    const last = lastPartUris(rest);
    expect(last.outputPart).toMatch(new RegExp(`output-00000009-${input.offsets[30]}-${input.offsets[100]}\\.jsonl$`));
    expect((await outputs(last.outputPart)).map((o) => o.custom_id)).toEqual(
      lines.slice(30).map((_, i) => `y-${i + 30}`),
    );
  });

  it('micro-batches through runMany on the echo backend', async () => {
    const echo = createEchoBackend();
    const runMany = vi.spyOn(echo, 'runMany');
    const run = vi.spyOn(echo, 'run');
    const input = await writeInput(
      dir,
      'echo.jsonl',
      Array.from({ length: 25 }, (_, i) => sentimentLine(`e-${i}`, 'x')),
    );
    const job = chunkJob(dir, input, { index: 10 });
    await runChunk(job, { storage, backend: echo, batchSize: 10 });
    expect(runMany.mock.calls.map(([inputs]) => inputs.length)).toEqual([10, 10, 5]);
    expect(run).not.toHaveBeenCalled();
  });
});

const dataDir = fileURLToPath(new URL('../../../../shared/data/sentiment-labelled-sentences/', import.meta.url));

describe.skipIf(!existsSync(dataDir))('throughput', () => {
  it('sentiment over the 3,000 labelled sentences in one chunk', async () => {
    const files = (await readdir(dataDir)).filter((f) => f.endsWith('_labelled.txt')).sort();
    const lines: string[] = [];
    const labels: string[] = [];
    for (const file of files) {
      for (const row of (await readFile(join(dataDir, file), 'utf8')).split('\n')) {
        const m = /^(.*)\t\s*([01])\s*$/.exec(row.trimEnd());
        if (m === null) continue;
        lines.push(sentimentLine(`${file}:${lines.length + 1}`, m[1]!.trim()));
        labels.push(m[2] === '1' ? 'positive' : 'negative');
      }
    }
    expect(lines).toHaveLength(3000);
    const input = await writeInput(dir, 'uci.jsonl', lines);
    const job = chunkJob(dir, input, { index: 11 });
    // The ceiling, measured first (so it also warms the model up): the same model over the
    // same texts in one in-process call, without storage or JSON.
    const inputs = lines.map((l) => (JSON.parse(l) as { body: { input: TaskInput } }).body.input);
    const t1 = performance.now();
    await embedded.runMany!(inputs, { signal: new AbortController().signal });
    const ceiling = 3000 / ((performance.now() - t1) / 1000);
    const t0 = performance.now();
    const result = await runChunk(job, { storage, backend: embedded });
    const seconds = (performance.now() - t0) / 1000;
    expect(result).toEqual({ status: 'done', completed: 3000, failed: 0, processedLines: 3000 });
    const out = await outputs(job.outputPart);
    const right = out.filter((o, i) => (o.response!.body as { output: { label: string } }).output.label === labels[i]);
    console.log(
      `bulk chunk runner: 3000 sentiment lines in ${seconds.toFixed(2)} s = ${Math.round(3000 / seconds)} lines/s ` +
        `(embedded, batch 64); strict accuracy ${((100 * right.length) / 3000).toFixed(1)}%; ` +
        `in-process ceiling ${Math.round(ceiling)} lines/s, runner at ${((100 * 3000) / seconds / ceiling).toFixed(0)}%`,
    );
  });
});
