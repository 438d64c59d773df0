import { describe, expect, it } from 'vitest';
import { decideAdmission } from '../../../producer/admission.ts';

describe('decideAdmission', () => {
  it.each([
    { sampledWaiting: 0, addedSinceSample: 0, localInFlight: 0, maxWaiting: 1, admit: true, estimate: 0 },
    { sampledWaiting: 9, addedSinceSample: 0, localInFlight: 0, maxWaiting: 10, admit: true, estimate: 9 },
    { sampledWaiting: 10, addedSinceSample: 0, localInFlight: 0, maxWaiting: 10, admit: false, estimate: 10 },
    { sampledWaiting: 5, addedSinceSample: 5, localInFlight: 5, maxWaiting: 10, admit: false, estimate: 10 },
    { sampledWaiting: 0, addedSinceSample: 9, localInFlight: 9, maxWaiting: 10, admit: true, estimate: 9 },
    // 900 adds since the sample, but only 64 requests still open here: at most 64 can wait.
    { sampledWaiting: 0, addedSinceSample: 900, localInFlight: 64, maxWaiting: 1000, admit: true, estimate: 64 },
  ])(
    'waiting $sampledWaiting + min(added $addedSinceSample, open $localInFlight) vs $maxWaiting → admit $admit',
    ({ admit, estimate, ...snapshot }) => {
      const decision = decideAdmission(snapshot);
      expect(decision.admit).toBe(admit);
      if (!decision.admit) expect(decision).toMatchObject({ reason: 'queue_full', estimatedWaiting: estimate });
    },
  );
});
