import { describe, expect, it } from 'vitest';
import { decideAdmission } from '../../../producer/admission.ts';

describe('decideAdmission', () => {
  it.each([
    { sampledWaiting: 0, addedSinceSample: 0, maxWaiting: 1, admit: true },
    { sampledWaiting: 9, addedSinceSample: 0, maxWaiting: 10, admit: true },
    { sampledWaiting: 10, addedSinceSample: 0, maxWaiting: 10, admit: false },
    { sampledWaiting: 5, addedSinceSample: 5, maxWaiting: 10, admit: false },
    { sampledWaiting: 0, addedSinceSample: 9, maxWaiting: 10, admit: true },
  ])('waiting $sampledWaiting + added $addedSinceSample vs limit $maxWaiting → admit $admit', (c) => {
    const decision = decideAdmission(c);
    expect(decision.admit).toBe(c.admit);
    if (!decision.admit)
      expect(decision).toMatchObject({ reason: 'queue_full', estimatedWaiting: c.sampledWaiting + c.addedSinceSample });
  });
});
