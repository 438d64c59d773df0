/**
 * How many bulk chunks a pool may run at once: the priority-balancing
 * controller (issue 4, principle 4). Real-time and bulk share each worker's
 * GPU; real-time has lane slots of its own, so it can always start, but every
 * bulk chunk in the engine makes its steps slower and its first tokens later.
 * The budget caps bulk so real-time stays within the pool's objective on time
 * to first token, and gives bulk every slot when real-time leaves them idle.
 *
 * AIMD, not a PI loop. The signal is a tail quantile over a window of a few
 * seconds: noisy at low rates, lagging by up to a window, and not linear in
 * the budget (latency is flat until the engine saturates, then climbs
 * steeply). A PI loop needs gains tuned to that curve for each model and GPU;
 * AIMD needs none: it backs off multiplicatively the moment the objective is
 * missed (fast relief, like TCP's congestion window) and probes upward one
 * step at a time while there is headroom, which converges just under the knee
 * whatever its position. After a decrease it holds for a while, since the
 * window still holds samples from before the cut. When real-time is badly
 * over (or a request has waited past the objective in the queue), chunks
 * already running are also asked to yield (chunk preemption), because a
 * lower budget only stops new ones from starting.
 *
 * "Every slot" (no real-time load, or no bulk lane to count) is applied as
 * no cap at all, so a worker that joins can start bulk work before the next
 * pass counts its slots.
 *
 * Pure: a function of the previous state, the pool's signals, the policy and
 * the clock, returning the next state and a decision with a typed reason.
 */
import { countAboveMs, quantileMs, totalCount } from '../common/latency-window.ts';

export interface BudgetPolicy {
  /** The pool's objective: this quantile of enqueue-to-first-token stays under it (ms). */
  objectiveMs: number;
  /** Which quantile (0.99: p99). */
  quantile: number;
  /** Fewer samples than this in the window: the quantile is not trusted (the queue's oldest wait still is). */
  minSamples: number;
  /**
   * A window is a miss only when more of its samples are over the objective than the quantile
   * allows by this many standard deviations of that count (binomial: at p99, 45 samples may hold
   * 1 over the objective, 1,000 may hold 16). A p99 read from a few dozen samples is nearly their
   * maximum: "p99 > objective" would fire on a single slow request, in about a third of the windows
   * (1 − 0.99^45) of a pool whose true p99 sits at the objective, and halve bulk for it.
   */
  missZ: number;
  /** Budget × this on a miss (0.5 halves it). */
  decrease: number;
  /** Slots added per step while there is headroom, as a fraction of the pool's bulk slots (at least 1). */
  increase: number;
  /** Probe upward only while the quantile is under headroom × objective (hysteresis band). */
  headroom: number;
  /** After a decrease, no further decrease for this long: the window still shows the time before it. */
  holdAfterDecreaseMs: number;
  /** Preempt running chunks when the quantile, or the oldest queued request's age, passes this × objective. */
  preemptAbove: number;
  /** The budget never goes below this (0: real-time may take the whole GPU). */
  minBudget: number;
}

export const defaultBudgetPolicy: Omit<BudgetPolicy, 'objectiveMs'> = {
  quantile: 0.99,
  minSamples: 20,
  missZ: 2,
  decrease: 0.5,
  increase: 0.1,
  headroom: 0.8,
  holdAfterDecreaseMs: 3000,
  preemptAbove: 2,
  minBudget: 0,
};

/** What the scheduler observed of one pool this pass. */
export interface BudgetSignals {
  /** Bulk slots of the pool's live, ready workers (their bulk lanes' concurrency, summed). */
  bulkSlots: number;
  /** Bulk chunks running now (the bulk lanes' in-flight, summed; a heartbeat old at most). */
  bulkRunning: number;
  /** Enqueue-to-first-token histogram over the workers' windows, merged (latency-window.ts). */
  firstToken: readonly number[];
  /** Real-time requests waiting in `rt.<pool>` now. */
  realtimeWaiting: number;
  /**
   * How long the oldest real-time request still without a first token has waited since enqueue:
   * queued, or running on a worker (ms; 0 when none).
   */
  oldestWaitingMs: number;
  /** How long the oldest request still queued in `rt.<pool>` (not started by any worker) has waited (ms; 0 when none). */
  oldestQueuedMs: number;
}

export interface BudgetState {
  budget: number;
  /** When the budget was last cut (ms); -Infinity when never. */
  lastDecreaseAt: number;
}

export type BudgetReason =
  /** No bulk lane in the pool (or none ready): nothing to budget. */
  | 'no_bulk_slots'
  /** No real-time request in the window or the queue: bulk gets every slot (work-conserving). */
  | 'no_realtime_load'
  /** More samples over the objective than the quantile allows (beyond noise, see missZ): multiplicative decrease. */
  | 'objective_missed'
  /**
   * A queued request has waited past the objective, or one in an engine past preemptAbove × the
   * objective without its first token: multiplicative decrease.
   */
  | 'realtime_backlog'
  /** Over the objective, but a decrease was just made and the window still shows the time before it. */
  | 'holding_after_decrease'
  /** Under headroom × objective (or too few samples to say otherwise), nothing waiting past the objective: additive increase. */
  | 'headroom'
  /** Between headroom × objective and the objective: keep. */
  | 'within_band';

export interface BudgetDecision {
  budget: number;
  previous: number;
  reason: BudgetReason;
  /** Running chunks to ask to yield now (0 unless real-time is far over and bulk runs above the new budget). */
  preempt: number;
  /** What the decision saw, for `interfleet scheduler explain`. */
  observed: {
    quantileMs: number | undefined;
    samples: number;
    /** Samples over the objective (the bucket holding it counted in proportion). */
    overObjective: number;
    realtimeWaiting: number;
    oldestWaitingMs: number;
    oldestQueuedMs: number;
    bulkSlots: number;
    bulkRunning: number;
  };
}

export function decideBudget(
  state: BudgetState | undefined,
  signals: BudgetSignals,
  policy: BudgetPolicy,
  now: number,
): { decision: BudgetDecision; state: BudgetState | undefined } {
  const slots = Math.max(0, signals.bulkSlots);
  const samples = totalCount(signals.firstToken);
  const q = samples >= policy.minSamples ? quantileMs(signals.firstToken, policy.quantile) : undefined;
  // A new leader starts from "everything"; with real-time load it halves from there, once per hold.
  const previous = Math.min(state?.budget ?? slots, slots);
  const lastDecreaseAt = state?.lastDecreaseAt ?? Number.NEGATIVE_INFINITY;
  const overObjective = countAboveMs(signals.firstToken, policy.objectiveMs);
  const observed = {
    quantileMs: q,
    samples,
    overObjective: Math.round(overObjective * 10) / 10,
    realtimeWaiting: signals.realtimeWaiting,
    oldestWaitingMs: signals.oldestWaitingMs,
    oldestQueuedMs: signals.oldestQueuedMs,
    bulkSlots: slots,
    bulkRunning: signals.bulkRunning,
  };
  const out = (budget: number, reason: BudgetReason, preempt = 0, decreasedAt = lastDecreaseAt) => ({
    decision: { budget, previous: state?.budget ?? slots, reason, preempt, observed },
    state: { budget, lastDecreaseAt: decreasedAt },
  });

  // No state kept: when workers come back the controller starts over from their slots.
  if (slots === 0) return { ...out(0, 'no_bulk_slots'), state: undefined };
  if (samples === 0 && signals.realtimeWaiting === 0 && signals.oldestWaitingMs === 0) {
    return out(slots, 'no_realtime_load');
  }

  /** More samples over `ms` than the quantile allows, beyond noise (see missZ); never with too few samples. */
  const over = (count: number): boolean => {
    if (q === undefined) return false;
    const p = 1 - policy.quantile;
    return count > p * samples + policy.missZ * Math.sqrt(samples * p * (1 - p));
  };
  const missed = over(overObjective);
  const urgentAt = policy.preemptAbove * policy.objectiveMs;
  // A request that cannot even start is a backlog at the objective. One already in an engine is
  // one sample of the quantile (a long prompt may take long to prefill), so it counts alone only
  // far past the objective: by then a stalled engine, whose requests give no samples at all.
  const backlog = signals.oldestQueuedMs > policy.objectiveMs || signals.oldestWaitingMs > urgentAt;
  if (missed || backlog) {
    if (now - lastDecreaseAt < policy.holdAfterDecreaseMs) return out(previous, 'holding_after_decrease');
    const budget = Math.max(Math.min(policy.minBudget, slots), Math.floor(previous * policy.decrease));
    const urgent = over(countAboveMs(signals.firstToken, urgentAt)) || signals.oldestWaitingMs > urgentAt;
    const preempt = urgent ? Math.max(0, signals.bulkRunning - budget) : 0;
    return out(budget, missed ? 'objective_missed' : 'realtime_backlog', preempt, now);
  }
  // No probe while a request in an engine is past the objective: not a backlog yet, not headroom either.
  const headroom = q === undefined || q < policy.headroom * policy.objectiveMs;
  if (headroom && signals.oldestWaitingMs <= policy.objectiveMs) {
    const step = Math.max(1, Math.round(slots * policy.increase));
    return out(Math.min(slots, previous + step), 'headroom');
  }
  return out(previous, 'within_band');
}
