import { describe, expect, it } from 'vitest';
import {
  decideGangs,
  type GangHoldReason,
  type GangSnapshot,
  type WaitingGang,
} from '../../../scheduler/gang-admission.ts';

const T0 = 1_700_000_000_000;

/** A waiting gang `id` of `size` ranks; created in id order unless `createdAt` says otherwise. */
function gang(id: string, size: number, opts: Partial<WaitingGang> = {}): WaitingGang {
  return { id, size, round: 1, priority: 0, createdAt: T0 + id.charCodeAt(0), ...opts };
}

function snapshot(s: Partial<GangSnapshot> & Pick<GangSnapshot, 'waiting'>): GangSnapshot {
  return { slots: 4, inFlight: 0, heldNotStarted: 0, heldRunning: 0, heldReducing: 0, quota: undefined, ...s };
}

/** `id:admit` or `id:<hold reason>`, in decision order. */
const outcome = (s: GangSnapshot): string[] =>
  decideGangs(s).decisions.map((d) => `${d.id}:${d.kind === 'admit' ? 'admit' : d.reason}`);

describe('decideGangs', () => {
  const cases: { name: string; snap: GangSnapshot; expected: string[]; free?: [number, number] }[] = [
    {
      name: 'admits whole gangs while they fit, in order',
      snap: snapshot({ waiting: [gang('a', 2), gang('b', 2)] }),
      expected: ['a:admit', 'b:admit'],
      free: [4, 0],
    },
    {
      name: 'never a partial gang: 3 ranks on 2 free slots wait whole, and reserve',
      snap: snapshot({ slots: 2, waiting: [gang('a', 2, { createdAt: T0 + 500 }), gang('b', 3, { createdAt: T0 })] }),
      expected: ['b:exceeds_pool_slots', 'a:admit'],
    },
    {
      name: 'a gang larger than every slot of the pool does not reserve',
      snap: snapshot({ slots: 2, waiting: [gang('a', 3), gang('b', 1)] }),
      expected: ['a:exceeds_pool_slots', 'b:admit'],
    },
    {
      name: 'a gang larger than the quota waits and does not reserve',
      snap: snapshot({ slots: 8, quota: 2, waiting: [gang('a', 3), gang('b', 2)] }),
      expected: ['a:exceeds_quota', 'b:admit'],
      free: [2, 0],
    },
    {
      name: 'the quota caps what gangs hold together',
      snap: snapshot({ slots: 8, quota: 3, heldRunning: 2, inFlight: 2, waiting: [gang('a', 2), gang('b', 1)] }),
      expected: ['a:waiting_for_slots', 'b:reserved_for_earlier_gang'],
      free: [1, 1],
    },
    {
      name: 'no training slot at all',
      snap: snapshot({ slots: 0, waiting: [gang('a', 1)] }),
      expected: ['a:no_training_slots'],
    },
    {
      name: 'a big gang at the head reserves: no backfill by smaller later gangs',
      snap: snapshot({ slots: 4, heldRunning: 2, inFlight: 2, waiting: [gang('a', 4), gang('b', 1), gang('c', 2)] }),
      expected: ['a:waiting_for_slots', 'b:reserved_for_earlier_gang', 'c:reserved_for_earlier_gang'],
      free: [2, 2],
    },
    {
      name: 'gangs ahead of the reserving one are admitted first',
      snap: snapshot({ slots: 4, waiting: [gang('a', 3), gang('b', 4), gang('c', 1)] }),
      expected: ['a:admit', 'b:waiting_for_slots', 'c:reserved_for_earlier_gang'],
      free: [4, 1],
    },
    {
      name: 'priority first, then age',
      snap: snapshot({
        slots: 2,
        waiting: [gang('a', 2), gang('b', 2, { priority: 5 }), gang('c', 2, { priority: 5, createdAt: T0 })],
      }),
      expected: ['c:admit', 'b:waiting_for_slots', 'a:reserved_for_earlier_gang'],
    },
    {
      name: 'a running job keeps its age: its next round goes before newer gangs',
      snap: snapshot({
        slots: 2,
        waiting: [gang('n', 2, { createdAt: T0 + 9 }), gang('o', 2, { round: 3, createdAt: T0 })],
      }),
      expected: ['o:admit', 'n:waiting_for_slots'],
    },
    {
      name: 'slots held by admitted gangs that have not started are not free',
      snap: snapshot({ slots: 4, heldNotStarted: 3, waiting: [gang('a', 2)] }),
      expected: ['a:waiting_for_slots'],
      free: [1, 1],
    },
    {
      name: 'a rank that started before its heartbeat says so counts once (held)',
      snap: snapshot({ slots: 4, heldRunning: 2, inFlight: 0, waiting: [gang('a', 2)] }),
      expected: ['a:admit'],
      free: [2, 0],
    },
    {
      name: 'a rank that ended but still shows in the heartbeats counts until the next beat',
      snap: snapshot({ slots: 4, heldRunning: 0, inFlight: 3, waiting: [gang('a', 2)] }),
      expected: ['a:waiting_for_slots'],
      free: [1, 1],
    },
    {
      name: "ranks no gang holds (a failed gang's, still stopping) use slots",
      snap: snapshot({ slots: 4, heldNotStarted: 2, heldRunning: 1, inFlight: 2, waiting: [gang('a', 1)] }),
      expected: ['a:waiting_for_slots'],
      free: [0, 0],
    },
    {
      name: "a gang's reduce holds one slot, from its state (the lane's inFlight does not count it)",
      snap: snapshot({ slots: 4, heldReducing: 1, waiting: [gang('a', 4), gang('b', 3)] }),
      expected: ['a:waiting_for_slots', 'b:reserved_for_earlier_gang'],
      free: [3, 3],
    },
    {
      name: 'the reduce done, its gang queued again: every slot is free at once',
      snap: snapshot({ slots: 4, heldReducing: 0, inFlight: 0, waiting: [gang('a', 4)] }),
      expected: ['a:admit'],
      free: [4, 0],
    },
    {
      name: 'nothing waiting',
      snap: snapshot({ waiting: [] }),
      expected: [],
      free: [4, 4],
    },
  ];

  it.each(cases)('$name', ({ snap, expected, free }) => {
    expect(outcome(snap)).toEqual(expected);
    if (free) {
      const pass = decideGangs(snap);
      expect([pass.freeBefore, pass.freeAfter]).toEqual(free);
    }
  });

  it('never admits more ranks than are free, over random snapshots', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 500; i++) {
      const slots = rand(9);
      const snap = snapshot({
        slots,
        inFlight: rand(slots + 1),
        heldNotStarted: rand(3),
        heldRunning: rand(3),
        heldReducing: rand(2),
        quota: rand(2) === 0 ? undefined : rand(9),
        waiting: Array.from({ length: rand(6) }, (_, k) => gang(`g${k}`, 1 + rand(5), { priority: rand(3) })),
      });
      const pass = decideGangs(snap);
      const admitted = pass.decisions.filter((d) => d.kind === 'admit').reduce((n, d) => n + d.size, 0);
      expect(admitted).toBeLessThanOrEqual(pass.freeBefore);
      expect(pass.freeBefore - admitted).toBe(pass.freeAfter);
      // Every decision is whole: an admitted gang's size is the gang's size.
      for (const d of pass.decisions) expect(d.size).toBe(snap.waiting.find((g) => g.id === d.id)!.size);
      // Nothing is admitted behind a gang that reserves.
      const reserving = pass.decisions.findIndex((d) => d.kind === 'hold' && d.reason === 'waiting_for_slots');
      if (reserving >= 0) {
        const later = pass.decisions.slice(reserving + 1).map((d) => (d.kind === 'admit' ? 'admit' : d.reason));
        expect(later.filter((r) => r === 'admit')).toEqual([]);
      }
      const reasons = new Set<GangHoldReason | 'admit'>(
        pass.decisions.map((d) => (d.kind === 'admit' ? 'admit' : d.reason)),
      );
      if (slots === 0) expect([...reasons].every((r) => r === 'no_training_slots' || r === 'exceeds_quota')).toBe(true);
    }
  });
});
