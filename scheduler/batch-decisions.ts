/**
 * What the scheduler leader does with the open batches on one pass: a pure
 * function of a snapshot (the batches' states and how many chunk jobs each
 * pool's bulk queue holds), a policy and the clock. Exactly one decision per
 * batch, each with a typed reason, "hold" included, so a pass can be logged
 * and replayed. The effects live in batch-loop.ts.
 *
 * Admission keeps a window per pool: at most that many chunk jobs sit in
 * `bulk.<pool>` (waiting, prioritised, delayed or running), so a batch of any
 * size costs Redis a cursor and a bounded number of jobs (principle 3). The
 * window is sized to what the pool can start soon: twice its current bulk
 * budget (snapshot.windows, from the balance pass), so every slot the budget
 * allows has a chunk ready and one behind it, and no more wait in Redis
 * where a later, fairer decision could not reach them. Before the balance
 * pass has counted a pool, `windowPerPool` applies. How the free window is shared among a pool's batches is a
 * pluggable `AdmissionShare`; the default is weighted fair share across
 * tenants with a bounded deadline boost (fair-share.ts). The share carries
 * state between passes (DRR credit), one per pool: it comes in with the
 * snapshot and goes out with the decisions.
 */
import type { BatchState } from '../common/batch/batch-state.ts';
import {
  emptyShareState,
  fairShare,
  type AdmissionCandidate,
  type AdmissionShare,
  type AdmitReason,
  type ShareGrant,
  type ShareState,
} from './fair-share.ts';

export type { AdmissionCandidate, AdmissionShare, AdmitReason, ShareState } from './fair-share.ts';

export interface BatchSnapshot {
  /** The open batches (BatchStore.getMany of BatchStore.openIds). */
  batches: readonly BatchState[];
  /**
   * Chunk jobs in `bulk.<pool>` now, for the pools of `poolsToCount`. A pool
   * missing here (its count failed) admits nothing this pass.
   */
  queued: ReadonlyMap<string, number>;
  /** The share's state per pool, as the previous pass returned it (absent: a fresh start). */
  share?: ReadonlyMap<string, ShareState>;
  /** Each pool's window from its bulk budget (windowFor); a pool absent here gets policy.windowPerPool. */
  windows?: ReadonlyMap<string, number>;
}

/** The window for a bulk budget: a chunk running in every allowed slot and one ready behind it (at least 2). */
export const windowFor = (budget: number): number => Math.max(2, 2 * budget);

/** A pass's decisions, one per batch in the snapshot's order, and the share state for the next pass. */
export interface BatchPass {
  decisions: BatchDecision[];
  share: Map<string, ShareState>;
}

export interface BatchPolicy {
  /** Chunk jobs of one pool that may sit in its bulk queue at once, until the pool's budget is known. */
  windowPerPool: number;
  /**
   * A batch validating for longer than this has its plan job re-added (a no-op
   * when it exists): the producer may have died between creating the batch and
   * queuing its planning. Default 10 s.
   */
  planGraceMs?: number;
  /** How a pool's free window is shared (default: fairShare() with every tenant weighing 1). */
  share?: AdmissionShare;
}

export type HoldReason =
  /**
   * validating: the producer's plan job has published nothing yet; in_progress: every chunk
   * published so far is admitted and the rest is still being planned; stopped: finalisation waits
   * for the end of planning, which it needs to account for every line.
   */
  | 'planning'
  /** The pool's window is full, or what was free went to other tenants' turns or this tenant's earlier batches. */
  | 'window_full'
  /** The pool's queue could not be counted this pass. */
  | 'window_unknown'
  /** Admission is over (all admitted) but admitted chunks have not all settled. */
  | 'chunks_in_flight'
  /** in_progress yet unplanned or stopped: not a state the life cycle produces; left alone. */
  | 'inconsistent';

export type FinalizeReason =
  /** Every chunk admitted and settled: in_progress → finalizing, then the finalize job. */
  | 'all_chunks_settled'
  /** Cancelled and every admitted chunk settled. */
  | 'cancel_drained'
  /** Already finalizing (completed or expired) and drained: (re)add the finalize job. */
  | 'finalizing';

export type BatchDecision =
  | { kind: 'close'; batchId: string; reason: 'terminal' }
  /** Make sure the plan job of a batch validating for a while exists. */
  | { kind: 'plan'; batchId: string; reason: 'validating_past_grace' }
  | { kind: 'expire'; batchId: string; from: 'validating' | 'in_progress'; reason: 'past_completion_window' }
  | {
      kind: 'finalize';
      batchId: string;
      /** Move in_progress → finalizing first (only when all chunks settled); else only enqueue. */
      transition: boolean;
      reason: FinalizeReason;
    }
  | {
      kind: 'admit';
      batchId: string;
      pool: string;
      /** The cursor this admission starts at (the fenced advance compares it). */
      cursor: number;
      count: number;
      /** Why the share granted them (deadline_boost when any of them was boosted). */
      reason: AdmitReason;
    }
  | {
      kind: 'withdraw';
      batchId: string;
      pool: string;
      /** Chunks below this index were admitted; those not yet settled are withdrawn if no worker holds them. */
      below: number;
      reason: 'batch_stopped';
    }
  | { kind: 'hold'; batchId: string; reason: HoldReason };

const defaultShare = fairShare();

/** Chunks admission may read: the whole plan once planned, else the pieces published so far. */
export const readableChunks = (b: BatchState): number => (b.planned ? b.counters.chunks : b.counters.plan_chunks);

/** Planning ended, or was never going to (stopped before any piece was published): finalisation may run. */
const planSettled = (b: BatchState): boolean => b.planned || b.counters.plan_chunks === 0;

const admissible = (b: BatchState): boolean =>
  b.status === 'in_progress' && b.stop === null && b.counters.cursor < readableChunks(b);

/** The pools whose bulk queue the snapshot must count: those with a batch that may take chunks. */
export function poolsToCount(batches: readonly BatchState[]): string[] {
  return [...new Set(batches.filter(admissible).map((b) => b.spec.model))];
}

/** One pass's decisions, in the snapshot's batch order, and the share state to carry. */
export function decideBatches(snapshot: BatchSnapshot, policy: BatchPolicy, now: number): BatchPass {
  const byBatch = new Map<string, BatchDecision>();
  const candidates = new Map<string, AdmissionCandidate[]>();

  for (const b of snapshot.batches) {
    const batchId = b.spec.id;
    const drained = b.counters.settled >= b.counters.admitted;
    let decision: BatchDecision | undefined;
    switch (b.status) {
      case 'failed':
      case 'completed':
      case 'expired':
      case 'cancelled':
        decision = { kind: 'close', batchId, reason: 'terminal' };
        break;
      case 'validating':
        if (now >= b.spec.expiresAt) {
          decision = { kind: 'expire', batchId, from: 'validating', reason: 'past_completion_window' };
        } else if (now - b.spec.createdAt >= (policy.planGraceMs ?? 10_000)) {
          decision = { kind: 'plan', batchId, reason: 'validating_past_grace' };
        } else {
          decision = { kind: 'hold', batchId, reason: 'planning' };
        }
        break;
      case 'in_progress':
        if ((!b.planned && b.counters.plan_chunks === 0) || b.stop !== null) {
          decision = { kind: 'hold', batchId, reason: 'inconsistent' };
        } else if (b.planned && b.counters.cursor >= b.counters.chunks && drained) {
          // Checked before expiry: work that all finished is delivered as completed, even if late to be noticed.
          decision = { kind: 'finalize', batchId, transition: true, reason: 'all_chunks_settled' };
        } else if (now >= b.spec.expiresAt) {
          decision = { kind: 'expire', batchId, from: 'in_progress', reason: 'past_completion_window' };
        } else if (b.counters.cursor >= readableChunks(b)) {
          decision = { kind: 'hold', batchId, reason: b.planned ? 'chunks_in_flight' : 'planning' };
        } else {
          const pool = b.spec.model;
          const list = candidates.get(pool) ?? [];
          list.push({
            batchId,
            tenant: b.spec.tenant,
            priority: b.spec.priority,
            remaining: readableChunks(b) - b.counters.cursor,
            createdAt: b.spec.createdAt,
            expiresAt: b.spec.expiresAt,
          });
          candidates.set(pool, list);
        }
        break;
      case 'cancelling':
      case 'finalizing':
        if (drained && !planSettled(b)) {
          decision = { kind: 'hold', batchId, reason: 'planning' };
        } else if (drained) {
          const reason = b.status === 'cancelling' ? 'cancel_drained' : 'finalizing';
          decision = { kind: 'finalize', batchId, transition: false, reason };
        } else if (b.stop !== null) {
          // Stopped with admitted chunks unsettled: those still queued would wait for a worker that may
          // never come (expiry with a busy or empty pool), so they are taken back and settled skipped.
          decision = {
            kind: 'withdraw',
            batchId,
            pool: b.spec.model,
            below: b.counters.cursor,
            reason: 'batch_stopped',
          };
        } else {
          decision = { kind: 'hold', batchId, reason: 'chunks_in_flight' };
        }
        break;
    }
    if (decision) byBatch.set(batchId, decision);
  }

  const share = policy.share ?? defaultShare;
  // Pools without candidates this pass keep their state as it was.
  const shareState = new Map(snapshot.share);
  const cursorOf = new Map(snapshot.batches.map((b) => [b.spec.id, b.counters.cursor]));
  for (const [pool, list] of candidates) {
    const queued = snapshot.queued.get(pool);
    if (queued === undefined) {
      for (const c of list) byBatch.set(c.batchId, { kind: 'hold', batchId: c.batchId, reason: 'window_unknown' });
      continue;
    }
    const free = Math.max(0, (snapshot.windows?.get(pool) ?? policy.windowPerPool) - queued);
    let grants = new Map<string, ShareGrant>();
    if (free > 0) {
      const r = share(list, free, shareState.get(pool) ?? emptyShareState, now);
      grants = r.grants;
      shareState.set(pool, r.state);
    }
    let left = free;
    for (const c of list) {
      const grant = grants.get(c.batchId);
      // Clamped: a share policy cannot admit past the batch's end or the window.
      const count = Math.max(0, Math.min(grant?.count ?? 0, c.remaining, left));
      left -= count;
      byBatch.set(
        c.batchId,
        count > 0
          ? { kind: 'admit', batchId: c.batchId, pool, cursor: cursorOf.get(c.batchId)!, count, reason: grant!.reason }
          : { kind: 'hold', batchId: c.batchId, reason: 'window_full' },
      );
    }
  }

  return { decisions: snapshot.batches.map((b) => byBatch.get(b.spec.id)!), share: shareState };
}

/**
 * The reason recorded for a chunk whose job BullMQ failed outside the bulk lane (`<code>: <message>`,
 * as the lane records its own): `worker_lost` for BullMQ's stalled limit (its worker died or stopped
 * renewing the lock on every run), else `internal` with whatever the job says.
 */
export function failedChunkReason(failedReason: string | undefined): string {
  const said = failedReason?.trim() || 'its job failed without a reason';
  return /stalled/i.test(said) ? `worker_lost: ${said}` : `internal: ${said}`;
}
