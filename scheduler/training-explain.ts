/**
 * The training pass's explanation record for one pool (`interfleet scheduler
 * explain`): the quota, the slots after the pass, and each open gang: the
 * running ones (admitted by earlier passes) first, then the pass's decision
 * for each waiting one, in admission order, with its typed reason. Pure:
 * built from the pass's snapshot and decisions.
 */
import type { TrainingExplanation } from '../common/contracts/explain.ts';
import type { TrainingState } from '../common/training/training-state.ts';
import { gangOrder, type GangPass, type GangSnapshot, type WaitingGang } from './gang-admission.ts';

type Gang = TrainingExplanation['gangs'][number];

export interface TrainingExplainInput {
  pool: string;
  quota: number | undefined;
  /** The pool's open gangs the pass read, queued or running (final ones are wound up, not explained). */
  gangs: readonly TrainingState[];
  snapshot: Pick<GangSnapshot, 'slots' | 'heldNotStarted' | 'heldRunning' | 'heldReducing'>;
  pass: GangPass;
  epoch: number;
  now: number;
}

/**
 * The admission snapshot of a pool's open gangs (queued, running or reducing) and its training
 * slots: running gangs hold their not-yet-started and still-running ranks, reducing ones a slot
 * for their reduce job, queued ones wait in order.
 */
export function gangSnapshot(
  open: readonly TrainingState[],
  fleet: Pick<GangSnapshot, 'slots' | 'inFlight' | 'quota'>,
): GangSnapshot {
  const running = open.filter((g) => g.status === 'running');
  return {
    ...fleet,
    heldNotStarted: running.reduce((n, g) => n + g.spec.workers - g.roundStarted, 0),
    heldRunning: running.reduce((n, g) => n + g.roundStarted - g.roundSucceeded, 0),
    heldReducing: open.filter((g) => g.status === 'reducing').length,
    waiting: open.filter((g) => g.status === 'queued').map(asWaiting),
  };
}

export function trainingExplanation(input: TrainingExplainInput): TrainingExplanation {
  const { snapshot, pass } = input;
  const byId = new Map(input.gangs.map((g) => [g.spec.id, g]));
  const entry = (g: TrainingState): Omit<Gang, 'decision' | 'reason'> => ({
    jobId: g.spec.id,
    tenant: g.spec.tenant,
    priority: g.spec.priority,
    size: g.spec.workers,
    round: g.round,
    rounds: g.spec.rounds,
    state: g.status,
  });
  const running = input.gangs
    .filter((g) => g.status === 'running')
    .sort((a, b) => gangOrder(asWaiting(a), asWaiting(b)))
    .map((g): Gang => ({ ...entry(g), decision: null, reason: null }));
  // Every decision is for a waiting gang, and the snapshot's waiting gangs are these gangs.
  const decided = pass.decisions.map((d): Gang => ({
    ...entry(byId.get(d.id)!),
    decision: d.kind,
    reason: d.reason,
    ...(d.kind === 'hold' && { free: d.free }),
  }));
  // Admission lowers the free slots by exactly the sizes it admits.
  const admitted = pass.freeBefore - pass.freeAfter;
  return {
    pool: input.pool,
    at: input.now,
    epoch: input.epoch,
    quota: input.quota ?? null,
    slots: {
      total: snapshot.slots,
      held: snapshot.heldNotStarted + snapshot.heldRunning + snapshot.heldReducing + admitted,
      free: pass.freeAfter,
    },
    gangs: [...running, ...decided],
  };
}

/** A gang as admission orders it (running gangs are listed in the order they would have been admitted). */
export const asWaiting = (g: TrainingState): WaitingGang => ({
  id: g.spec.id,
  round: g.round,
  size: g.spec.workers,
  priority: g.spec.priority,
  createdAt: g.spec.createdAt,
});
