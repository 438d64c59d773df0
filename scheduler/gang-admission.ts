/**
 * Which waiting training gangs of a pool to admit on one pass: a pure
 * function of a snapshot, one decision per waiting gang with a typed reason.
 * The effects live in training-loop.ts.
 *
 * A gang (one round of a training job: `size` ranks that must run at once)
 * is admitted only whole, and only when `size` training slots are free for
 * it now, under the pool's quota. Each of its ranks then becomes a job on
 * `train.<pool>` that a free slot picks up at once, so its ranks start
 * together. Never a partial gang: there is no decision that admits fewer
 * ranks than the gang's size.
 *
 * Free slots. Slots are the training lanes of the pool's ready workers (their
 * heartbeats' concurrency). What is used is counted from two sources, because
 * each lags in one direction: the gangs' own state says at once which ranks
 * are held (admitted and not ended), and which of those started; heartbeats
 * say what runs on the lanes, up to a heartbeat late, and also see ranks no
 * gang holds any more (a failed gang's rank still running until it stops).
 *   used = held not started + reducing + max(held running, inFlight)
 * A rank that just started is held in either term; one that just ended
 * leaves `held` at once and `inFlight` at the worker's next heartbeat, which
 * the training lane sends as soon as a rank ends (not only on its timer).
 * Erring this way means a round may wait for that beat; the other way would
 * admit a gang one of whose ranks finds no slot.
 *
 * A round's reduce job (rounds mode) runs on a training slot too. It is
 * counted from the gang's state alone (one slot per gang `reducing`), never
 * from the heartbeats (a lane's inFlight counts ranks only): the gang leaves
 * `reducing` in the same Lua call that ends the reduce, so its next round
 * is never held back by a heartbeat that still shows the reduce running.
 *
 * Order and reservation. Waiting gangs are taken by priority (higher
 * first), then age (older first); a job's later rounds keep its place, so a
 * running job's next round goes before newer gangs of its priority. The
 * first gang that could run on the pool but not on what is free now
 * reserves: no gang behind it is admitted on this pass, even one small
 * enough to fit (no backfill). Without run-time estimates any backfill may
 * delay the big gang indefinitely (each small gang that takes a freed slot
 * puts its start off again); with reservation, slots sit idle while running
 * gangs drain, which is the price of never starving a big gang. Gangs that
 * cannot run on the pool at all (larger than the quota or than every slot the
 * ready workers have) do not reserve: they would block the pool for good.
 *
 * Those gangs stay waiting rather than fail: slots come and go with workers
 * (a scale-up or a worker restart makes a gang fit again) and the quota is
 * config. A gang larger than the quota is refused when it is submitted
 * (producer/routes/training.ts), so here it means the quota was lowered since.
 */

export interface WaitingGang {
  /** The training job's id. */
  id: string;
  /** The round it waits to run. */
  round: number;
  /** Ranks: slots it needs at once. */
  size: number;
  priority: number;
  createdAt: number;
}

export interface GangSnapshot {
  /** Training slots of the pool's ready workers (the sum of their training lanes' concurrency). */
  slots: number;
  /** Ranks running on those lanes, as the heartbeats last said (the sum of inFlight). */
  inFlight: number;
  /** Ranks of admitted gangs that have not started. */
  heldNotStarted: number;
  /** Ranks of admitted gangs that started and have not ended. */
  heldRunning: number;
  /** Gangs whose round waits for its reduce (rounds mode): one slot each, for the reduce job. */
  heldReducing: number;
  /** Most slots gangs may hold at once (pools[].trainingQuota); undefined: every slot. */
  quota: number | undefined;
  /** The gangs waiting, in any order. */
  waiting: readonly WaitingGang[];
}

export type GangHoldReason =
  /** Larger than the pool's training quota. */
  | 'exceeds_quota'
  /** The pool's ready workers have no training slot. */
  | 'no_training_slots'
  /** Larger than every training slot the ready workers have together. */
  | 'exceeds_pool_slots'
  /** Fits the pool, not what is free now: waits, and reserves (nothing behind it is admitted). */
  | 'waiting_for_slots'
  /** Behind a gang that reserves. */
  | 'reserved_for_earlier_gang';

export type GangDecision =
  | { kind: 'admit'; id: string; round: number; size: number; reason: 'fits' }
  | { kind: 'hold'; id: string; round: number; size: number; reason: GangHoldReason; free: number };

export interface GangPass {
  /** One per waiting gang, in admission order. */
  decisions: GangDecision[];
  /** Slots gangs may hold: min(quota, slots). */
  capacity: number;
  /** Free before and after this pass's admissions. */
  freeBefore: number;
  freeAfter: number;
}

/** Admission order: priority (higher first), then age (older first), then id. */
export function gangOrder(a: WaitingGang, b: WaitingGang): number {
  return b.priority - a.priority || a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function decideGangs(snapshot: GangSnapshot): GangPass {
  const { slots, quota } = snapshot;
  const capacity = Math.max(0, Math.min(quota ?? Infinity, slots));
  const used = snapshot.heldNotStarted + snapshot.heldReducing + Math.max(snapshot.heldRunning, snapshot.inFlight);
  const freeBefore = Math.max(0, capacity - used);
  let free = freeBefore;
  let reserving = false;
  const decisions = [...snapshot.waiting].sort(gangOrder).map((g): GangDecision => {
    const hold = (reason: GangHoldReason): GangDecision => ({
      kind: 'hold',
      id: g.id,
      round: g.round,
      size: g.size,
      reason,
      free,
    });
    if (quota !== undefined && g.size > quota) return hold('exceeds_quota');
    if (slots === 0) return hold('no_training_slots');
    if (g.size > slots) return hold('exceeds_pool_slots');
    if (reserving) return hold('reserved_for_earlier_gang');
    if (g.size > free) {
      reserving = true;
      return hold('waiting_for_slots');
    }
    free -= g.size;
    return { kind: 'admit', id: g.id, round: g.round, size: g.size, reason: 'fits' };
  });
  return { decisions, capacity, freeBefore, freeAfter: free };
}
