import { describe, expect, it } from 'vitest';
import type { TrainingExplanation } from '../../../common/contracts/explain.ts';
import { trainingExplanationSchema } from '../../../common/contracts/explain.ts';
import type { TrainingState } from '../../../common/training/training-state.ts';
import { decideGangs } from '../../../scheduler/gang-admission.ts';
import { gangSnapshot, trainingExplanation } from '../../../scheduler/training-explain.ts';

const T0 = 1_700_000_000_000;

/** An open gang `id` (ids sort by age: `a` is oldest). */
function gang(id: string, size: number, over: Partial<TrainingState> & { priority?: number } = {}): TrainingState {
  const { priority = 0, ...state } = over;
  return {
    spec: {
      id,
      pool: 'p',
      tenant: `t-${id}`,
      command: 'x',
      args: [],
      dataUri: 'file:///d/',
      shard: 'none',
      mode: 'gang',
      initUri: null,
      checkpointPrefix: 'file:///c/',
      params: {},
      workers: size,
      rounds: 3,
      priority,
      attempts: 1,
      createdAt: T0 + id.charCodeAt(0),
    },
    status: 'queued',
    round: 1,
    roundStarted: 0,
    roundSucceeded: 0,
    reason: null,
    waiting: null,
    admittedAt: null,
    endedAt: null,
    restarts: 0,
    restartReason: null,
    stopRestart: null,
    ...state,
  };
}

/** What the loop builds: the snapshot from the gangs, the pass from the snapshot. */
function explain(gangs: TrainingState[], slots: number, opts: { quota?: number; inFlight?: number } = {}) {
  const snapshot = gangSnapshot(gangs, { slots, inFlight: opts.inFlight ?? 0, quota: opts.quota });
  const record = trainingExplanation({
    pool: 'p',
    quota: opts.quota,
    gangs,
    snapshot,
    pass: decideGangs(snapshot),
    epoch: 7,
    now: T0,
  });
  return trainingExplanationSchema.parse(record);
}

/** `id state decision:reason[/free]`, in record order. */
const rows = (e: TrainingExplanation): string[] =>
  e.gangs.map(
    (g) => `${g.jobId} ${g.state} ${g.decision ?? '-'}:${g.reason ?? '-'}${g.free === undefined ? '' : `/${g.free}`}`,
  );

describe('trainingExplanation', () => {
  const cases: {
    name: string;
    gangs: TrainingState[];
    slots: number;
    opts?: { quota?: number; inFlight?: number };
    expected: string[];
    slotsAfter: TrainingExplanation['slots'];
    quota?: number | null;
  }[] = [
    {
      name: 'a quota pool with no gang: slots only',
      gangs: [],
      slots: 4,
      opts: { quota: 2 },
      expected: [],
      slotsAfter: { total: 4, held: 0, free: 2 },
      quota: 2,
    },
    {
      name: 'admitted gangs count as held; a gang that does not fit says how many slots are free',
      gangs: [gang('a', 2), gang('b', 3)],
      slots: 4,
      expected: ['a queued admit:fits', 'b queued hold:waiting_for_slots/2'],
      slotsAfter: { total: 4, held: 2, free: 2 },
      quota: null,
    },
    {
      name: 'running gangs first, in admission order, then the waiting ones with their reasons',
      gangs: [
        gang('a', 1, { status: 'running', roundStarted: 1 }),
        gang('b', 1, { status: 'running', priority: 5 }),
        gang('c', 3, { priority: 1 }),
        gang('d', 1),
        gang('e', 9),
      ],
      slots: 4,
      expected: [
        'b running -:-',
        'a running -:-',
        'c queued hold:waiting_for_slots/2',
        'd queued hold:reserved_for_earlier_gang/2',
        'e queued hold:exceeds_pool_slots/2',
      ],
      slotsAfter: { total: 4, held: 2, free: 2 },
    },
    {
      name: "a gang waiting for its round's reduce holds one slot (its reduce job)",
      gangs: [gang('a', 2, { status: 'reducing', round: 2 }), gang('b', 4)],
      slots: 4,
      opts: { inFlight: 0 },
      expected: ['b queued hold:waiting_for_slots/3'],
      slotsAfter: { total: 4, held: 1, free: 3 },
    },
    {
      name: 'over the quota',
      gangs: [gang('a', 3)],
      slots: 8,
      opts: { quota: 2 },
      expected: ['a queued hold:exceeds_quota/2'],
      slotsAfter: { total: 8, held: 0, free: 2 },
    },
    {
      name: 'ranks still running on the workers but held by no gang use slots, not hold them',
      gangs: [gang('a', 2)],
      slots: 2,
      opts: { inFlight: 1 },
      expected: ['a queued hold:waiting_for_slots/1'],
      slotsAfter: { total: 2, held: 0, free: 1 },
    },
    {
      name: 'no training slot',
      gangs: [gang('a', 1)],
      slots: 0,
      expected: ['a queued hold:no_training_slots/0'],
      slotsAfter: { total: 0, held: 0, free: 0 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const e = explain(c.gangs, c.slots, c.opts);
      expect(rows(e)).toEqual(c.expected);
      expect(e.slots).toEqual(c.slotsAfter);
      if (c.quota !== undefined) expect(e.quota).toBe(c.quota);
    });
  }

  it("carries each gang's tenant, priority, size and round, and the pass's epoch and time", () => {
    const e = explain([gang('a', 2, { status: 'running', round: 2 })], 4);
    expect(e).toMatchObject({ pool: 'p', at: T0, epoch: 7 });
    expect(e.gangs[0]).toEqual({
      jobId: 'a',
      tenant: 't-a',
      priority: 0,
      size: 2,
      round: 2,
      rounds: 3,
      state: 'running',
      decision: null,
      reason: null,
    });
  });
});
