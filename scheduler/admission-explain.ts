/**
 * The admission pass's explanation records (`interfleet scheduler explain`):
 * per pool, the window, how full it was, and each open batch with the
 * decision the pass made for it and why. Pure: built from the pass's
 * snapshot and decisions.
 */
import type { BatchState } from '../common/batch/batch-state.ts';
import type { AdmissionExplanation } from '../common/contracts/explain.ts';
import type { BatchDecision } from './batch-decisions.ts';

export function admissionExplanations(
  batches: readonly BatchState[],
  decisions: readonly BatchDecision[],
  queued: ReadonlyMap<string, number>,
  windowOf: (pool: string) => number,
  epoch: number,
  now: number,
): AdmissionExplanation[] {
  const byPool = new Map<string, AdmissionExplanation>();
  batches.forEach((b, i) => {
    const d = decisions[i]!;
    const pool = b.spec.model;
    let record = byPool.get(pool);
    if (!record) {
      record = { pool, at: now, epoch, window: windowOf(pool), queued: queued.get(pool) ?? null, batches: [] };
      byPool.set(pool, record);
    }
    record.batches.push({
      batchId: b.spec.id,
      tenant: b.spec.tenant,
      priority: b.spec.priority,
      status: b.status,
      admitted: b.counters.cursor,
      chunks: b.counters.chunks,
      expiresAt: b.spec.expiresAt,
      decision: d.kind,
      reason: d.reason,
      ...(d.kind === 'admit' && { count: d.count }),
    });
  });
  return [...byPool.values()];
}
