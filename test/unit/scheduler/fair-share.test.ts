import { describe, expect, it } from 'vitest';
import {
  emptyShareState,
  fairShare,
  type AdmissionCandidate,
  type AdmissionShare,
  type ShareState,
} from '../../../scheduler/fair-share.ts';

const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;

/** A batch of `tenant` with `remaining` chunks, created an hour ago with a 24 h window (not boosted). */
function cand(batchId: string, tenant: string, remaining = 1000, f: Partial<AdmissionCandidate> = {}) {
  return { batchId, tenant, remaining, priority: 0, createdAt: NOW - HOUR, expiresAt: NOW + 23 * HOUR, ...f };
}
/** 24 h window with `left` ms to go: boosted under the default 10% when left ≤ 2.4 h. */
const due = (left: number): Partial<AdmissionCandidate> => ({
  createdAt: NOW + left - 24 * HOUR,
  expiresAt: NOW + left,
});

/** Chunks granted per tenant. */
function perTenant(
  cands: readonly AdmissionCandidate[],
  grants: Map<string, { count: number }>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of cands) out[c.tenant] = (out[c.tenant] ?? 0) + (grants.get(c.batchId)?.count ?? 0);
  return out;
}

/**
 * `passes` passes of `free` chunks each over backlogged candidates (remaining shrinks as granted),
 * the state carried (or not): the chunks each tenant got, and the largest gap seen between two tenants.
 */
function simulate(
  share: AdmissionShare,
  cands: AdmissionCandidate[],
  passes: number,
  free: number,
  opts: { carry?: boolean } = {},
): { total: Record<string, number>; history: Record<string, number>[] } {
  let state: ShareState = emptyShareState;
  const total: Record<string, number> = {};
  const history: Record<string, number>[] = [];
  for (let p = 0; p < passes; p++) {
    const live = cands.filter((c) => c.remaining > 0);
    const r = share(live, free, opts.carry === false ? emptyShareState : state, NOW);
    state = r.state;
    for (const c of live) {
      const n = r.grants.get(c.batchId)?.count ?? 0;
      c.remaining -= n;
      total[c.tenant] = (total[c.tenant] ?? 0) + n;
    }
    history.push({ ...total });
  }
  return { total, history };
}

describe('fairShare: one pass', () => {
  const many = (tenant: string, n: number, remaining = 1000) =>
    Array.from({ length: n }, (_, i) => cand(`${tenant}${i}`, tenant, remaining));
  const cases: {
    name: string;
    cands: AdmissionCandidate[];
    free: number;
    weights?: Record<string, number>;
    want: Record<string, number>;
  }[] = [
    { name: 'equal weights split equally', cands: [cand('a0', 'a'), cand('b0', 'b')], free: 8, want: { a: 4, b: 4 } },
    {
      name: 'weights 2:1 split 2:1',
      cands: [cand('a0', 'a'), cand('b0', 'b')],
      free: 9,
      weights: { a: 2 },
      want: { a: 6, b: 3 },
    },
    {
      name: 'fractional weights are ratios (0.5 : 0.25 = 2:1)',
      cands: [cand('a0', 'a'), cand('b0', 'b')],
      free: 9,
      weights: { a: 0.5, b: 0.25 },
      want: { a: 6, b: 3 },
    },
    {
      name: '10 batches vs 1 batch: the same chunks',
      cands: [...many('a', 10), cand('b0', 'b')],
      free: 8,
      want: { a: 4, b: 4 },
    },
    {
      name: 'a huge batch vs a small one (both with more than the window): the same chunks',
      cands: [cand('a0', 'a', 1_000_000), cand('b0', 'b', 20)],
      free: 16,
      want: { a: 8, b: 8 },
    },
    {
      name: 'work-conserving: what b cannot use goes to a',
      cands: [cand('a0', 'a'), cand('b0', 'b', 1)],
      free: 8,
      want: { a: 7, b: 1 },
    },
    {
      name: 'work-conserving under weights: a weight-9 tenant with 2 chunks leaves the rest',
      cands: [cand('a0', 'a', 2), cand('b0', 'b')],
      free: 10,
      weights: { a: 9 },
      want: { a: 2, b: 8 },
    },
    {
      name: 'less work than window: everyone gets all',
      cands: [cand('a0', 'a', 2), cand('b0', 'b', 3)],
      free: 16,
      want: { a: 2, b: 3 },
    },
    {
      name: 'three tenants, free 3: one each',
      cands: [cand('a0', 'a'), cand('b0', 'b'), ...many('c', 5)],
      free: 3,
      want: { a: 1, b: 1, c: 1 },
    },
  ];
  it.each(cases)('$name', ({ cands, free, weights, want }) => {
    const { grants } = fairShare({ weights })(cands, free, emptyShareState, NOW);
    expect(perTenant(cands, grants)).toEqual(want);
    const total = [...grants.values()].reduce((n, g) => n + g.count, 0);
    expect(total).toBe(
      Math.min(
        free,
        cands.reduce((n, c) => n + c.remaining, 0),
      ),
    );
    for (const g of grants.values()) expect(g.reason).toBe('fair_share');
  });

  it("gives a tenant's chunks to its own batches in its order: priority, then deadline urgency, then age", () => {
    const cands = [
      cand('old', 'a', 2, { createdAt: NOW - 5 * HOUR }),
      cand('new', 'a', 2, { createdAt: NOW - HOUR }),
      cand('high', 'a', 2, { priority: 3 }),
      cand('urgent', 'a', 2, due(HOUR)), // boosted: first, even before higher priority
      cand('urgent-high', 'a', 2, { priority: 3, ...due(2 * HOUR) }),
    ];
    // The boost phase spends a's credit (16 of debt allowed) on the boosted batches, earliest deadline first.
    const { grants } = fairShare()(cands, 7, emptyShareState, NOW);
    expect(Object.fromEntries(grants)).toEqual({
      urgent: { count: 2, reason: 'deadline_boost' },
      'urgent-high': { count: 2, reason: 'deadline_boost' },
      high: { count: 2, reason: 'fair_share' },
      old: { count: 1, reason: 'fair_share' },
    });
    // Without the boost, priority first, then urgency among equal priority, then age.
    const { grants: plain } = fairShare({ maxDebtChunks: 0 })(cands, 7, emptyShareState, NOW);
    expect([...plain].map(([id, g]) => [id, g.count])).toEqual([
      ['urgent-high', 2],
      ['high', 2],
      ['urgent', 2],
      ['old', 1],
    ]);
  });
});

describe('fairShare: across passes', () => {
  it('carries credit, so a window freeing one chunk a pass still converges on 2:1', () => {
    const share = fairShare({ weights: { a: 2 } });
    const { total, history } = simulate(share, [cand('a0', 'a'), cand('b0', 'b')], 30, 1);
    expect(total).toEqual({ a: 20, b: 10 });
    // Every prefix is within one quantum (2 chunks) of the weights.
    for (const h of history) expect(Math.abs((h.a ?? 0) - 2 * (h.b ?? 0))).toBeLessThanOrEqual(2);
    // Without the carried state each pass starts the rotation afresh: the first tenant takes all.
    const fresh = simulate(share, [cand('a0', 'a'), cand('b0', 'b')], 30, 1, { carry: false });
    expect(fresh.total).toEqual({ a: 30, b: 0 });
  });

  it('resumes a turn cut short by the window without a second quantum', () => {
    const share = fairShare({ weights: { a: 3 } });
    const { history } = simulate(share, [cand('a0', 'a'), cand('b0', 'b')], 8, 2);
    // a's turn of 3 spans passes 1 and 2; b then gets its 1; and so on.
    expect(history.map((h) => [h.a ?? 0, h.b ?? 0])).toEqual([
      [2, 0],
      [3, 1],
      [5, 1],
      [6, 2],
      [8, 2],
      [9, 3],
      [11, 3],
      [12, 4],
    ]);
  });

  it('10 batches vs 1 batch, equal weights, free 3 a pass: equal within one chunk at every pass', () => {
    const cands = [...Array.from({ length: 10 }, (_, i) => cand(`a${i}`, 'a', 30)), cand('b0', 'b', 300)];
    const { total, history } = simulate(fairShare(), cands, 50, 3);
    expect(total.a! + total.b!).toBe(150);
    for (const h of history) expect(Math.abs((h.a ?? 0) - (h.b ?? 0))).toBeLessThanOrEqual(1);
  });

  it('keeps no credit for a tenant without work (no saving up while idle)', () => {
    const share = fairShare({ weights: { a: 4 } });
    // a's quantum is 4 but the window stops it after 1: it is mid-turn with 3 credit.
    const r1 = share([cand('a0', 'a'), cand('b0', 'b')], 1, emptyShareState, NOW);
    expect(r1.state).toEqual({ credit: { a: 3 }, next: 'a', midTurn: true });
    // a has nothing to admit this pass: its credit goes; b is served.
    const r2 = share([cand('b0', 'b')], 1, r1.state, NOW);
    expect(r2.state.credit.a).toBeUndefined();
    expect(perTenant([cand('b0', 'b')], r2.grants)).toEqual({ b: 1 });
  });

  it('a tenant that joins late is not owed the passes it missed', () => {
    const share = fairShare();
    const a = cand('a0', 'a');
    const b = cand('b0', 'b');
    let state: ShareState = emptyShareState;
    for (let p = 0; p < 10; p++) state = share([a], 4, state, NOW).state;
    const { grants } = share([a, b], 8, state, NOW);
    expect(perTenant([a, b], grants)).toEqual({ a: 4, b: 4 });
  });
});

describe('fairShare: deadline boost', () => {
  it('serves boosted batches first, earliest deadline first, across tenants', () => {
    const cands = [
      cand('a0', 'a'),
      cand('b-late', 'b', 10, due(2 * HOUR)),
      cand('c-soon', 'c', 3, due(HOUR)),
      cand('d-notyet', 'd', 10, due(3 * HOUR)), // 3 h left of 24: over 10%
    ];
    const { grants } = fairShare()(cands, 5, emptyShareState, NOW);
    expect(Object.fromEntries(grants)).toEqual({
      'c-soon': { count: 3, reason: 'deadline_boost' },
      'b-late': { count: 2, reason: 'deadline_boost' },
    });
  });

  it('takes effect from the configured fraction of the window', () => {
    const cands = [cand('a0', 'a'), cand('b0', 'b', 10, due(3 * HOUR))];
    const at = (windowFraction: number) =>
      fairShare({ windowFraction })(cands, 4, emptyShareState, NOW).grants.get('b0')?.reason;
    expect(at(0.1)).toBe('fair_share');
    expect(at(0.125)).toBe('deadline_boost'); // 3 h = 12.5% of 24 h
    expect(at(0)).toBe('fair_share');
  });

  it('cannot starve: a tenant always boosted runs at most maxDebtChunks ahead, then shares equally', () => {
    const maxDebtChunks = 4;
    // a submits batches that are always in the boost zone (e.g. a very short completion window).
    const cands = [cand('a0', 'a', 1000, due(60_000)), cand('b0', 'b')];
    const { total, history } = simulate(fairShare({ maxDebtChunks }), cands, 100, 1);
    expect(history[maxDebtChunks - 1]).toEqual({ a: maxDebtChunks, b: 0 }); // the boost goes first...
    for (const h of history) expect((h.a ?? 0) - (h.b ?? 0)).toBeLessThanOrEqual(maxDebtChunks + 1); // ...bounded
    expect(total.b).toBeGreaterThanOrEqual(50 - (maxDebtChunks + 1) / 2);
  });

  it('keeps boost debt while a tenant is idle, so pausing does not clear it', () => {
    const share = fairShare({ maxDebtChunks: 4 });
    const r1 = share([cand('a0', 'a', 1000, due(60_000)), cand('b0', 'b')], 4, emptyShareState, NOW);
    expect(r1.state.credit).toEqual({ a: -4 });
    const r2 = share([cand('b0', 'b')], 1, r1.state, NOW);
    expect(r2.state.credit.a).toBe(-4);
    // Back with ordinary work, a waits while b catches up (4 rounds, then a's turns come again).
    const { grants } = share([cand('a1', 'a'), cand('b0', 'b')], 6, r2.state, NOW);
    expect(perTenant([cand('a1', 'a'), cand('b0', 'b')], grants)).toEqual({ a: 1, b: 5 });
  });

  it('debt does not idle the pool: a tenant alone is served whatever it owes', () => {
    const share = fairShare({ maxDebtChunks: 4 });
    const { state } = share([cand('a0', 'a', 1000, due(60_000)), cand('b0', 'b')], 4, emptyShareState, NOW);
    const { grants } = share([cand('a1', 'a')], 8, state, NOW);
    expect(grants.get('a1')?.count).toBe(8);
  });
});
