/**
 * Builds decide()'s PoolSnapshot from the raw signals one leader pass reads
 * (heartbeats, BullMQ counts, open batches, gangs, the actuator's count).
 * Pure, so that the live loop and tests share it; the reads themselves are
 * the loop's.
 *
 * Heartbeats carry windows, not totals: rates are a window's sum over its
 * width. A worker older than the `work` field reports none: its real-time
 * requests then count one unit each (from its first-token histogram), and it
 * contributes no capacity sample, so decide() keeps what it had.
 */
import type { Heartbeat } from '../contracts/heartbeat.ts';
import { mergeCounts, quantileMs, totalCount } from '../latency-window.ts';
import type { OpenBatch, PoolSnapshot, QueueCounts } from './types.ts';

export interface PoolSignals {
  pool: string;
  at: number;
  replicas: PoolSnapshot['replicas'];
  /** Live heartbeats of the pool's workers. */
  heartbeats: readonly Heartbeat[];
  queues: PoolSnapshot['queues'];
  /** Age of the oldest real-time request waiting in the queue (ms; 0 when none). */
  oldestQueuedMs: number;
  batches: readonly OpenBatch[];
  training: Omit<PoolSnapshot['training'], 'replicasWithRanks'>;
  /** The quantile the objective is on (scheduler.balance.quantile, 0.99). */
  quantile: number;
}

const perSecond = (units: number, windowMs: number): number => (windowMs > 0 ? (units * 1000) / windowMs : 0);

export function poolSnapshot(sig: PoolSignals): PoolSnapshot {
  const byState = { ready: 0, starting: 0, draining: 0 };
  let rtUnits = 0;
  let rtRequests = 0;
  let bulkUnits = 0;
  let bulkRecords = 0;
  let fullMs = 0;
  let fullUnits = 0;
  let replicasWithRanks = 0;
  for (const hb of sig.heartbeats) {
    byState[hb.state]++;
    if (hb.lanes.some((l) => l.name === 'training' && l.inFlight > 0)) replicasWithRanks++;
    if (hb.work) {
      const w = hb.work;
      rtUnits += perSecond(w.realtime.units, w.windowMs);
      rtRequests += perSecond(w.realtime.requests, w.windowMs);
      bulkUnits += perSecond(w.bulk.units, w.windowMs);
      bulkRecords += perSecond(w.bulk.records, w.windowMs);
      fullMs += w.full.ms;
      fullUnits += w.full.units;
    } else if (hb.realtime) {
      const requests = perSecond(totalCount(hb.realtime.firstToken), hb.realtime.windowMs);
      rtUnits += requests;
      rtRequests += requests;
    }
  }
  const firstToken = mergeCounts(sig.heartbeats.flatMap((h) => (h.realtime ? [h.realtime.firstToken] : [])));
  const samples = totalCount(firstToken);
  const pending = Math.max(0, ...sig.heartbeats.map((h) => h.realtime?.oldestPendingMs ?? 0));
  return {
    pool: sig.pool,
    at: sig.at,
    replicas: sig.replicas,
    workers: byState,
    queues: sig.queues,
    realtime: {
      unitsPerSecond: rtUnits,
      requestsPerSecond: rtRequests,
      firstTokenMs: samples > 0 ? quantileMs(firstToken, sig.quantile) : undefined,
      samples,
      oldestWaitingMs: Math.max(sig.oldestQueuedMs, pending),
    },
    // Units per full millisecond, summed over workers, is one replica's rate when full.
    capacity: fullMs > 0 ? { unitsPerSecond: (fullUnits * 1000) / fullMs, fullMs } : undefined,
    bulk: {
      unitsPerRecord: bulkRecords > 0 ? bulkUnits / bulkRecords : undefined,
      unitsPerSecond: bulkUnits,
      batches: sig.batches,
    },
    training: { ...sig.training, replicasWithRanks },
  };
}

/** BullMQ's counts plus the delayed jobs already due (a worker may take them now). */
export function queueCounts(
  counts: Partial<Record<'wait' | 'waiting' | 'prioritized' | 'delayed' | 'active', number>>,
  delayedDue: number,
): QueueCounts {
  const delayed = counts.delayed ?? 0;
  const due = Math.min(delayed, delayedDue);
  return {
    wait: counts.wait ?? counts.waiting ?? 0,
    prioritized: counts.prioritized ?? 0,
    delayedDue: due,
    delayed: delayed - due,
    active: counts.active ?? 0,
  };
}
