import { describe, expect, it } from 'vitest';
import { LLAMA2_70B_H100, stepTimeMs } from '../../../common/sim/sim-model.ts';

// Medians of Splitwise's published profiling (llama2-70b, h100-80gb), as quoted in sim-model.ts.
const decodeRows = [
  { decodeSeqs: 1, measuredMs: 37.0 },
  { decodeSeqs: 2, measuredMs: 37.4 },
  { decodeSeqs: 4, measuredMs: 40.0 },
  { decodeSeqs: 8, measuredMs: 40.4 },
  { decodeSeqs: 16, measuredMs: 42.0 },
  { decodeSeqs: 32, measuredMs: 52.3 },
];
const prefillRows = [
  { prefillTokens: 256, measuredMs: 51.8 },
  { prefillTokens: 512, measuredMs: 83.8 },
  { prefillTokens: 1024, measuredMs: 158.0 },
  { prefillTokens: 2048, measuredMs: 310.3 },
  { prefillTokens: 4096, measuredMs: 642.7 },
  { prefillTokens: 8192, measuredMs: 1192.0 },
  { prefillTokens: 16384, measuredMs: 2397.8 },
];

describe('sim step time (Llama-2-70B on H100, Splitwise data)', () => {
  it.each(decodeRows)('decodes $decodeSeqs sequences in $measuredMs ms ±6%', ({ decodeSeqs, measuredMs }) => {
    expect(Math.abs(stepTimeMs({ prefillTokens: 0, decodeSeqs }) / measuredMs - 1)).toBeLessThan(0.06);
  });

  it.each(prefillRows)('prefills $prefillTokens tokens in $measuredMs ms ±6%', ({ prefillTokens, measuredMs }) => {
    expect(Math.abs(stepTimeMs({ prefillTokens, decodeSeqs: 0 }) / measuredMs - 1)).toBeLessThan(0.06);
  });

  it('grows with the tokens in the batch: slowly for decodes, linearly for prefill', () => {
    const decode = [1, 8, 64, 256].map((decodeSeqs) => stepTimeMs({ prefillTokens: 0, decodeSeqs }));
    const prefill = [512, 1024, 2048, 4096].map((prefillTokens) => stepTimeMs({ prefillTokens, decodeSeqs: 0 }));
    for (const series of [decode, prefill]) {
      series.slice(1).forEach((ms, i) => expect(ms).toBeGreaterThan(series[i]!));
    }
    // 256× the decodes costs < 5× the time (memory-bound); 8× the prompt tokens ~7× (compute-bound).
    expect(decode[3]! / decode[0]!).toBeLessThan(5);
    expect(prefill[3]! / prefill[0]!).toBeGreaterThan(6);
    // A mixed step pays for its prefill chunk on top of the decodes riding along.
    expect(stepTimeMs({ prefillTokens: 2000, decodeSeqs: 48 })).toBeGreaterThan(
      stepTimeMs({ prefillTokens: 0, decodeSeqs: 48 }),
    );
  });

  it('costs nothing for an empty step', () => {
    expect(stepTimeMs({ prefillTokens: 0, decodeSeqs: 0 }, LLAMA2_70B_H100)).toBe(0);
  });
});
