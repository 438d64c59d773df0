/**
 * Admission for real-time requests: a pure decision from what the producer
 * knows without a Redis round trip: the pool's waiting depth as last sampled,
 * plus what this replica added since that sample.
 */
export interface AdmissionSnapshot {
  /** Waiting jobs in `rt.<pool>` at the last sample (all replicas). */
  sampledWaiting: number;
  /** Jobs this replica enqueued since that sample. */
  addedSinceSample: number;
  /** Requests this replica is still waiting on for the pool. */
  localInFlight: number;
  maxWaiting: number;
}

export type AdmissionDecision =
  { admit: true; reason: 'below_limit' } | { admit: false; reason: 'queue_full'; estimatedWaiting: number };

export function decideAdmission(s: AdmissionSnapshot): AdmissionDecision {
  // An add since the sample can only still be waiting if its request is still
  // in flight here: at thousands of req/s most were answered long ago.
  const estimatedWaiting = s.sampledWaiting + Math.min(s.addedSinceSample, s.localInFlight);
  if (estimatedWaiting >= s.maxWaiting) return { admit: false, reason: 'queue_full', estimatedWaiting };
  return { admit: true, reason: 'below_limit' };
}
