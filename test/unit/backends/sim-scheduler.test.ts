import { describe, expect, it } from 'vitest';
import { stepTimeMs } from '../../../common/sim/sim-model.ts';
import {
  enqueue,
  newSeq,
  planStep,
  preemptForPriority,
  simulate,
  type SchedulerConfig,
  type SimSeq,
} from '../../../common/sim/sim-scheduler.ts';

const chunked: SchedulerConfig = { maxNumSeqs: 256, maxNumBatchedTokens: 2048, chunkedPrefill: true };
const prefillFirst: SchedulerConfig = { ...chunked, chunkedPrefill: false };

/** A running sequence that has finished its prompt and decodes. */
function decoding(id: number): SimSeq {
  return { ...newSeq(id, 100, 50), prefilled: 100, generated: 3 };
}

const planned = (plan: ReturnType<typeof planStep>) => plan.items.map(({ seq, tokens }) => [seq.id, tokens]);

describe('planStep', () => {
  it.each([
    {
      name: 'chunked: decodes first, then FIFO prompts, the last cut to the budget',
      cfg: { ...chunked, maxNumBatchedTokens: 1000 },
      running: [decoding(1), decoding(2)],
      waiting: [newSeq(3, 600, 10), newSeq(4, 600, 10), newSeq(5, 10, 10)],
      items: [
        [1, 1],
        [2, 1],
        [3, 600],
        [4, 398],
      ],
      admitted: 2,
    },
    {
      name: 'chunked: no more sequences than maxNumSeqs',
      cfg: { ...chunked, maxNumSeqs: 3 },
      running: [decoding(1), decoding(2)],
      waiting: [newSeq(3, 10, 10), newSeq(4, 10, 10)],
      items: [
        [1, 1],
        [2, 1],
        [3, 10],
      ],
      admitted: 1,
    },
    {
      name: 'prefill-first: whole prompts while they fit, decodes stall',
      cfg: { ...prefillFirst, maxNumBatchedTokens: 1000 },
      running: [decoding(1)],
      waiting: [newSeq(3, 600, 10), newSeq(4, 300, 10), newSeq(5, 200, 10)],
      items: [
        [3, 600],
        [4, 300],
      ],
      admitted: 2,
    },
    {
      name: 'prefill-first: a prompt larger than the budget runs alone',
      cfg: { ...prefillFirst, maxNumBatchedTokens: 1000 },
      running: [],
      waiting: [newSeq(3, 5000, 10), newSeq(4, 10, 10)],
      items: [[3, 5000]],
      admitted: 1,
    },
    {
      name: 'prefill-first: nothing admissible, so every running sequence decodes',
      cfg: { ...prefillFirst, maxNumSeqs: 2 },
      running: [decoding(1), decoding(2)],
      waiting: [newSeq(3, 10, 10)],
      items: [
        [1, 1],
        [2, 1],
      ],
      admitted: 0,
    },
  ])('$name', ({ cfg, running, waiting, items, admitted }) => {
    const plan = planStep(running, waiting, cfg);
    expect(planned(plan)).toEqual(items);
    expect(plan.admitted).toBe(admitted);
    expect(plan.ms).toBe(stepTimeMs({ prefillTokens: plan.prefillTokens, decodeSeqs: plan.decodeSeqs }));
  });

  it('is empty (and free) when there is nothing to run', () => {
    expect(planStep([], [], chunked)).toMatchObject({ items: [], admitted: 0, ms: 0 });
  });
});

describe('simulate', () => {
  it('gives one request alone the calibrated TTFT (one prefill step) and TBT (decode at batch 1)', () => {
    const [r] = simulate([{ arrivalMs: 0, promptTokens: 512, outputTokens: 128 }], chunked);
    // Splitwise medians for Llama-2-70B on H100: 83.8 ms prefill of 512 tokens, 37.0 ms per token.
    expect(Math.abs(r!.ttftMs / 83.8 - 1)).toBeLessThan(0.05);
    expect(Math.abs(r!.tbtMs / 37.0 - 1)).toBeLessThan(0.05);
    expect(r!.finishMs).toBeCloseTo(r!.ttftMs + 127 * r!.tbtMs, 6);
  });

  it('chunks a prompt larger than the token budget over several steps', () => {
    const [r] = simulate([{ arrivalMs: 0, promptTokens: 5000, outputTokens: 2 }], chunked);
    const steps = [2048, 2048, 904].map((prefillTokens) => stepTimeMs({ prefillTokens, decodeSeqs: 0 }));
    expect(r!.ttftMs).toBeCloseTo(
      steps.reduce((a, b) => a + b),
      6,
    );
  });

  it.each([
    { policy: 'chunked', cfg: chunked },
    { policy: 'prefill-first', cfg: prefillFirst },
  ])('$policy: a probe request waits longer for its first token as bulk work fills the engine', ({ cfg }) => {
    const probe = { arrivalMs: 5000, promptTokens: 512, outputTokens: 16 };
    const ttfts = [0, 8, 64, 512].map((bulk) => {
      const backlog = Array.from({ length: bulk }, () => ({ arrivalMs: 0, promptTokens: 1024, outputTokens: 256 }));
      return simulate([...backlog, probe], cfg).at(-1)!.ttftMs;
    });
    ttfts.slice(1).forEach((ms, i) => expect(ms).toBeGreaterThan(ttfts[i]!));
    expect(ttfts[3]! / ttfts[0]!).toBeGreaterThan(5);
  });

  it('admits in arrival order (FIFO) when only one sequence fits', () => {
    const reqs = [30, 10, 20].map((arrivalMs) => ({ arrivalMs, promptTokens: 100, outputTokens: 4 }));
    const finish = simulate(reqs, { ...chunked, maxNumSeqs: 1 }).map((r) => r.finishMs);
    expect(finish[1]).toBeLessThan(finish[2]!);
    expect(finish[2]).toBeLessThan(finish[0]!);
  });

  it('stalls running decodes behind new prompts without chunking, not with it', () => {
    const reqs = [
      { arrivalMs: 0, promptTokens: 100, outputTokens: 200 },
      ...Array.from({ length: 20 }, (_, i) => ({ arrivalMs: 1000 + i * 100, promptTokens: 2000, outputTokens: 4 })),
    ];
    const [withChunks] = simulate(reqs, chunked);
    const [without] = simulate(reqs, prefillFirst);
    expect(without!.tbtMs).toBeGreaterThan(withChunks!.tbtMs);
  });
});

describe('priority', () => {
  it('queues a sequence behind its own priority and ahead of lower ones (FIFO within one)', () => {
    const waiting: SimSeq[] = [];
    for (const [id, priority] of [
      [0, 1],
      [1, 1],
      [2, 0],
      [3, 1],
      [4, 0],
    ] as const) {
      enqueue(waiting, newSeq(id, 10, 1, priority));
    }
    expect(waiting.map((s) => s.id)).toEqual([2, 4, 0, 1, 3]);
  });

  it('takes a real-time prompt ahead of a queued bulk backlog: TTFT of its own prefill, not the backlog', () => {
    // 256 bulk prompts of 512 tokens queued at t=0 (a chunk's micro-batches), one real-time prompt at t=100.
    const bulk = Array.from({ length: 256 }, () => ({
      arrivalMs: 0,
      promptTokens: 512,
      outputTokens: 16,
      priority: 1,
    }));
    const rt = { arrivalMs: 100, promptTokens: 1024, outputTokens: 8 };
    const fifo = simulate([...bulk.map((b) => ({ ...b, priority: 0 })), rt], chunked).at(-1)!;
    const prio = simulate([...bulk, { ...rt, priority: 0 }], chunked).at(-1)!;
    // FIFO: behind 128k tokens of prefill (~64 steps of ~310 ms). Priority: the next step or two.
    expect(fifo.ttftMs).toBeGreaterThan(10_000);
    expect(prio.ttftMs).toBeLessThan(1_000);
  });
});

describe('preemptForPriority', () => {
  const small: SchedulerConfig = { maxNumSeqs: 4, maxNumBatchedTokens: 2048, chunkedPrefill: true };

  it("gives a full batch's lowest-ranked, latest sequence back to the queue for a higher-ranked one", () => {
    const running = [0, 1, 2, 3].map((id) => ({ ...newSeq(id, 100, 50, 1), prefilled: 100, generated: 5 }));
    const waiting: SimSeq[] = [];
    enqueue(waiting, newSeq(9, 100, 10, 0));
    enqueue(waiting, newSeq(10, 100, 10, 1));
    expect(preemptForPriority(running, waiting, small)).toBe(1);
    expect(running.map((s) => s.id)).toEqual([0, 1, 2]);
    // The real-time one first, then the preempted one (its tokens kept, its prompt to prefill again), then bulk.
    expect(waiting.map((s) => [s.id, s.prefilled, s.generated])).toEqual([
      [9, 0, 0],
      [3, 0, 5],
      [10, 0, 0],
    ]);
    // Nothing ranks below a bulk head: no further preemption.
    running.push(waiting.shift()!);
    expect(preemptForPriority(running, waiting, small)).toBe(0);
  });

  it('keeps real-time TTFT near its own prefill with the batch full of bulk, and every bulk token still comes', () => {
    const bulk = Array.from({ length: 8 }, () => ({ arrivalMs: 0, promptTokens: 256, outputTokens: 64, priority: 1 }));
    const rt = { arrivalMs: 500, promptTokens: 256, outputTokens: 4, priority: 0 };
    const results = simulate([...bulk, rt], small);
    const alone = simulate([rt], small)[0]!;
    expect(results.at(-1)!.ttftMs).toBeLessThan(alone.ttftMs + 100); // one step at most behind its own prefill
    expect(results.every((r) => Number.isFinite(r.finishMs))).toBe(true);
  });
});
