import { describe, expect, it } from 'vitest';
import type { SchedulerExplain, TrainingExplanation } from '../../../common/contracts/explain.ts';
import { formatExplain, trainingLines } from '../../../producer/cli/explain-format.ts';

const T0 = 1_700_000_000_000;
const id = (n: number) => `train_${String(n).padStart(20, '0')}`;

function gang(n: number, over: Partial<TrainingExplanation['gangs'][number]> = {}) {
  return {
    jobId: id(n),
    tenant: 'nlp',
    priority: 0,
    size: 2,
    round: 1,
    rounds: 1,
    state: 'queued',
    decision: 'hold',
    reason: 'waiting_for_slots',
    free: 1,
    ...over,
  };
}

function training(over: Partial<TrainingExplanation> = {}): TrainingExplanation {
  return { pool: 'p', at: T0 - 300, epoch: 3, quota: null, slots: { total: 4, held: 0, free: 4 }, gangs: [], ...over };
}

describe('trainingLines', () => {
  const cases: { name: string; t: TrainingExplanation; lines: (string | RegExp)[] }[] = [
    {
      name: 'a quota pool with no gang',
      t: training({ quota: 2, slots: { total: 4, held: 0, free: 2 } }),
      lines: ['  training      0 of 4 slots held, 2 free, quota 2; 0 running, 0 waiting; 0.3 s ago', /no open gang/],
    },
    {
      name: 'a running gang, one admitted now, and holds with their reasons',
      t: training({
        slots: { total: 4, held: 3, free: 1 },
        gangs: [
          gang(1, { state: 'running', decision: null, reason: null, size: 1, round: 2, rounds: 3 }),
          gang(2, { decision: 'admit', reason: 'fits', free: undefined }),
          gang(3, { size: 3, priority: 5, tenant: 'vision' }),
          gang(4, { reason: 'exceeds_pool_slots', size: 9 }),
        ],
      }),
      lines: [
        /^ {2}training {6}3 of 4 slots held, 1 free; 2 running, 2 waiting; 0\.3 s ago$/,
        /job +tenant +prio +ranks +round +state +decision/,
        `    ${id(1)}  nlp          p0        1    2/3  running  admitted by an earlier pass`,
        `    ${id(2)}  nlp          p0        2    1/1  queued   admit: fits`,
        `    ${id(3)}  vision       p5        3    1/1  queued   hold: waiting_for_slots (needs 3, 1 free)`,
        `    ${id(4)}  nlp          p0        9    1/1  queued   hold: exceeds_pool_slots`,
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const lines = trainingLines(c.t, T0);
      expect(lines).toHaveLength(c.lines.length);
      c.lines.forEach((want, i) =>
        typeof want === 'string' ? expect(lines[i]).toBe(want) : expect(lines[i]).toMatch(want),
      );
    });
  }
});

describe('formatExplain', () => {
  const explain = (t: TrainingExplanation | null): SchedulerExplain => ({
    object: 'scheduler.explain',
    now: T0,
    pools: [{ pool: 'p', budget: null, admission: null, training: t, autoscale: null }],
  });

  it('prints a training section only for a pool with a training record', () => {
    expect(formatExplain(explain(training()))).toContain('  training      0 of 4 slots held');
    const none = formatExplain(explain(null));
    expect(none).not.toContain('training');
    expect(none).toContain('no decision recorded');
  });
});
