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
  snapshot: Pick<GangSnapshot, 'slots' | 'heldNotStarted' | 'heldRunning'>;
  pass: GangPass;
  epoch: number;
  now: number;
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
  const decided = pass.decisions.flatMap((d): Gang[] => {
    const g = byId.get(d.id);
    if (!g) return [];
    return [{ ...entry(g), decision: d.kind, reason: d.reason, ...(d.kind === 'hold' && { free: d.free }) }];
  });
  const admitted = pass.decisions.reduce((n, d) => n + (d.kind === 'admit' ? d.size : 0), 0);
  return {
    pool: input.pool,
    at: input.now,
    epoch: input.epoch,
    quota: input.quota ?? null,
    slots: {
      total: snapshot.slots,
      held: snapshot.heldNotStarted + snapshot.heldRunning + admitted,
      free: pass.freeAfter,
    },
    gangs: [...running, ...decided],
  };
}

/** A gang as admission orders it: running gangs are listed in the order they would have been admitted. */
const asWaiting = (g: TrainingState): WaitingGang => ({
  id: g.spec.id,
  round: g.round,
  size: g.spec.workers,
  priority: g.spec.priority,
  createdAt: g.spec.createdAt,
});
