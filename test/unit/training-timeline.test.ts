import { describe, expect, it } from 'vitest';
import { roundBreakdowns, type RoundTimes } from '../bench/training-timeline.ts';

/** A round of two ranks admitted at `t`: rank k starts at t+10+k, trains 1 s, ends 1.2 s after its start. */
const round = (r: number, t: number): RoundTimes => ({
  round: r,
  ranks: [0, 1].map((k) => ({
    rank: k,
    addedAt: t,
    startedAt: t + 10 + k,
    endedAt: t + 10 + k + 1200,
    trainSeconds: 1 + k / 10,
  })),
  // Added 300 ms after the last rank's end, taken 5 ms later, done 100 ms after that.
  reduce: { addedAt: t + 1511, processedOn: t + 1516, finishedOn: t + 1616 },
});

describe('roundBreakdowns', () => {
  it('takes each round but the last apart from the ranks’ and jobs’ timestamps', () => {
    const [b, ...rest] = roundBreakdowns([round(1, 0), round(2, 2000), round(3, 4000)]);
    expect(rest).toHaveLength(1);
    expect(b).toEqual({
      round: 1,
      roundMs: 2000,
      computeMs: 1100,
      computeMedianMs: 1050,
      rankOtherMs: 150,
      startMs: 11,
      gapMs: 2011 - 1211,
      toReduceMs: 300,
      reduceMs: 105,
      reduceRunMs: 100,
      admissionMs: 2000 - 1616,
      nextStartMs: 11,
      overheadMs: 900,
    });
    // The gap is its four parts.
    expect(b!.toReduceMs + b!.reduceMs + b!.admissionMs + b!.nextStartMs).toBe(b!.gapMs);
  });

  it('has nothing to say about a single round', () => {
    expect(roundBreakdowns([round(1, 0)])).toEqual([]);
  });
});
