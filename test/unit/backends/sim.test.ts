import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { TaskInput } from '../../../common/contracts/tasks.ts';
import {
  createBackend,
  createSimBackend,
  simStartupDelayMs,
  stepTimeMs,
  type ModelBackend,
  type SimBackendOptions,
} from '../../../gpu-worker/backends/index.ts';
import { chatInput, collectDeltas, poolFixture } from './fixtures.ts';

const prefillMs = (tokens: number) => stepTimeMs({ prefillTokens: tokens, decodeSeqs: 0 });
const decodeMs = (seqs: number) => stepTimeMs({ prefillTokens: 0, decodeSeqs: seqs });

let backend: ModelBackend;
function sim(extra: Partial<SimBackendOptions> = {}): ModelBackend {
  backend = createSimBackend({
    timeScale: 1,
    maxNumSeqs: 256,
    maxNumBatchedTokens: 2048,
    chunkedPrefill: true,
    defaultMaxTokens: 16,
    now: () => Date.now(),
    ...extra,
  });
  return backend;
}

/** A chat of exactly `tokens` prompt tokens (4 characters each). */
const promptOf = (tokens: number, maxTokens: number) => chatInput('abc '.repeat(tokens), { maxTokens });

beforeEach(() => vi.useFakeTimers());
afterEach(async () => {
  await backend.close();
  vi.useRealTimers();
});

describe('sim backend', () => {
  it('streams max_tokens deltas in order, first after one prefill step, then one per decode step', async () => {
    const opts = collectDeltas();
    const done = sim().run(promptOf(512, 3), opts);
    await vi.advanceTimersByTimeAsync(prefillMs(512) - 1);
    expect(opts.deltas).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(opts.deltas).toEqual(['abc ']);
    await vi.advanceTimersByTimeAsync(2 * decodeMs(1));
    expect(await done).toEqual({
      task: 'chat',
      text: 'abc abc abc ',
      finishReason: 'length',
      usage: { promptTokens: 512, completionTokens: 3 },
    });
    expect(opts.deltas).toEqual(['abc ', 'abc ', 'abc ']);
  });

  it('runs timeScale times real time (0.1: ten times faster)', async () => {
    let finished = false;
    void sim({ timeScale: 0.1 })
      .run(promptOf(512, 8), collectDeltas())
      .then(() => (finished = true));
    const modelMs = prefillMs(512) + 7 * decodeMs(1);
    await vi.advanceTimersByTimeAsync(modelMs * 0.1 - 1);
    expect(finished).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(finished).toBe(true);
  });

  it('makes a chat wait longer for its first token when bulk records fill the engine', async () => {
    const firstToken = async (bulk: number): Promise<number> => {
      const b = sim();
      const records: TaskInput[] = Array.from({ length: bulk }, () => promptOf(1024, 64));
      const backlog = b.runMany!(records, { signal: new AbortController().signal });
      const start = Date.now();
      let first = NaN;
      const chat = b.run(promptOf(256, 2), {
        signal: new AbortController().signal,
        onDelta: () => (first ||= Date.now()),
      });
      await vi.advanceTimersByTimeAsync(600_000);
      await Promise.all([backlog, chat]);
      await b.close();
      return first - start;
    };
    const alone = await firstToken(0);
    const loaded = await firstToken(64);
    expect(alone).toBeCloseTo(prefillMs(256), -1);
    expect(loaded).toBeGreaterThan(5 * alone);
  });

  it.each([
    ['priority', 'ahead of'],
    ['fcfs', 'behind'],
  ] as const)('with schedulingPolicy %s, a chat goes %s bulk records already queued', async (policy, _where) => {
    const b = sim({ maxNumSeqs: 4, schedulingPolicy: policy });
    const records: TaskInput[] = Array.from({ length: 8 }, () => promptOf(512, 64));
    const backlog = b.runMany!(records, { signal: new AbortController().signal });
    const start = Date.now();
    let first = NaN;
    const chat = b.run(promptOf(256, 1), {
      signal: new AbortController().signal,
      onDelta: () => (first ||= Date.now()),
    });
    await vi.advanceTimersByTimeAsync(600_000);
    await Promise.all([backlog, chat]);
    // Priority: the chat preempts a bulk record and is prefilled in the next step or two. FCFS: it
    // waits for the first four records to finish 64 tokens each, then for a seat.
    const bulkRound = prefillMs(4 * 512) + 63 * decodeMs(4);
    if (policy === 'priority') expect(first - start).toBeLessThan(prefillMs(2048) + prefillMs(256) + 1);
    else expect(first - start).toBeGreaterThan(bulkRound);
  });

  it('on abort while decoding: rejects with the reason at once, and the freed slot goes to the next request', async () => {
    const b = sim({ maxNumSeqs: 1 });
    const ac = new AbortController();
    const victimOpts = collectDeltas(ac.signal);
    const running = b.run(promptOf(512, 100), victimOpts);
    const queued = b.run(promptOf(512, 2), collectDeltas());
    await vi.advanceTimersByTimeAsync(prefillMs(512) + 1);
    expect(victimOpts.deltas).toHaveLength(1);
    const reason = new Error('caller gone');
    ac.abort(reason);
    await expect(running).rejects.toBe(reason);
    // The step under way finishes (its work for the victim is lost); the queued request takes the slot next.
    await vi.advanceTimersByTimeAsync(decodeMs(1) + prefillMs(512) + decodeMs(1));
    await expect(queued).resolves.toMatchObject({ usage: { completionTokens: 2 } });
    expect(victimOpts.deltas).toHaveLength(1);
  });

  it('on abort while queued: rejects with the reason at once, having streamed nothing', async () => {
    const b = sim({ maxNumSeqs: 1 });
    const first = b.run(promptOf(512, 4), collectDeltas());
    const ac = new AbortController();
    const queuedOpts = collectDeltas(ac.signal);
    const queued = b.run(promptOf(512, 4), queuedOpts);
    await vi.advanceTimersByTimeAsync(1);
    const reason = new Error('deadline');
    ac.abort(reason);
    await expect(queued).rejects.toBe(reason);
    await vi.advanceTimersByTimeAsync(prefillMs(512) + 3 * decodeMs(1));
    await expect(first).resolves.toMatchObject({ usage: { completionTokens: 4 } });
    expect(queuedOpts.deltas).toEqual([]);
  });

  it('runMany answers every task, in input order', async () => {
    const inputs: TaskInput[] = [
      promptOf(100, 4),
      { task: 'sentiment', text: 'I love it' },
      { task: 'summarize', text: 'One. Two. Three.', maxSentences: 2 },
      promptOf(10, 1),
    ];
    const results = sim().runMany!(inputs, { signal: new AbortController().signal });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await results).toEqual([
      expect.objectContaining({ task: 'chat', usage: { promptTokens: 100, completionTokens: 4 } }),
      { task: 'sentiment', label: 'neutral', score: 0 },
      { task: 'summarize', summary: 'One. Two.', sentences: [0, 1] },
      expect.objectContaining({ task: 'chat', usage: { promptTokens: 10, completionTokens: 1 } }),
    ]);
  });

  it('runMany rejects with the reason when its signal aborts, and leaves the engine free', async () => {
    const b = sim({ maxNumSeqs: 4 });
    const ac = new AbortController();
    const batch = b.runMany!(
      Array.from({ length: 8 }, () => promptOf(512, 500)),
      { signal: ac.signal },
    );
    await vi.advanceTimersByTimeAsync(2000);
    const reason = new Error('yield');
    ac.abort(reason);
    await expect(batch).rejects.toBe(reason);
    const chat = b.run(promptOf(512, 1), collectDeltas());
    // It waits for the step under way (four decodes) to end, then prefills alone.
    await vi.advanceTimersByTimeAsync(decodeMs(4) + prefillMs(512));
    await expect(chat).resolves.toMatchObject({ task: 'chat' });
  });

  it('is built by the registry from the pool config', async () => {
    backend = await createBackend(poolFixture({ backend: 'sim', sim: { timeScale: 0.5 } }), { concurrency: 1 });
    expect(backend.kind).toBe('sim');
  });

  it.each([
    // startupMs (model), timeScale, process uptime (wall) → wall ms left to wait
    [0, 1, 0, 0],
    [120_000, 1 / 6, 0, 20_000],
    [120_000, 1 / 6, 3_000, 17_000],
    [120_000, 1 / 6, 25_000, 0],
    [5_000, 1, 1_000, 4_000],
  ])('a start-up of %i ms at timeScale %d after %i ms of process uptime leaves %i ms to wait', (s, k, up, left) => {
    expect(simStartupDelayMs(s, k, up)).toBeCloseTo(left, 6);
  });
});
