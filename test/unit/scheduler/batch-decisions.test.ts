import { describe, expect, it } from 'vitest';
import type { BatchState, BatchStatus, CounterField } from '../../../common/batch/batch-state.ts';
import {
  decideBatches,
  failedChunkReason,
  poolsToCount,
  type AdmissionShare,
  type BatchDecision,
  type ShareState,
  windowFor,
} from '../../../scheduler/batch-decisions.ts';

const NOW = 1_700_000_000_000;
const LATER = NOW + 3_600_000;

interface BatchFixture {
  id?: string;
  status?: BatchStatus;
  stop?: 'cancelled' | 'expired' | null;
  planned?: boolean;
  pool?: string;
  priority?: number;
  tenant?: string;
  expiresAt?: number;
  createdAt?: number;
  counters?: Partial<Record<CounterField, number>>;
}

let seq = 0;
function batch(f: BatchFixture = {}): BatchState {
  const id = f.id ?? `batch_${(seq++).toString(16).padStart(20, '0')}`;
  const status = f.status ?? 'in_progress';
  const planned = f.planned ?? status !== 'validating';
  return {
    spec: {
      id,
      endpoint: '/v1/infer',
      model: f.pool ?? 'p',
      input: 'file:///in/',
      outputPrefix: 'file:///out/',
      completionWindow: '24h',
      createdAt: f.createdAt ?? NOW - 1000,
      expiresAt: f.expiresAt ?? LATER,
      metadata: null,
      priority: f.priority ?? 0,
      tenant: f.tenant ?? 't',
      source: 'api',
    },
    status,
    stop: f.stop ?? null,
    planned,
    plan: null,
    errors: [],
    timestamps: {},
    counters: {
      total: 0,
      completed: 0,
      failed: 0,
      chunks: 10,
      plan_chunks: planned ? (f.counters?.chunks ?? 10) : 0,
      cursor: 0,
      plan_byte: 0,
      admitted: 0,
      settled: 0,
      not_run: 0,
      ...f.counters,
    },
    files: { output: null, error: null, manifest: null },
  };
}

const decideOne = (b: BatchState, queued = 0, window = 8): BatchDecision =>
  decideBatches({ batches: [b], queued: new Map([['p', queued]]) }, { windowPerPool: window }, NOW).decisions[0]!;

describe('decideBatches: one batch', () => {
  const cases: { name: string; batch: BatchFixture; queued?: number; want: Partial<BatchDecision> }[] = [
    ...(['failed', 'completed', 'expired', 'cancelled'] as const).map((status) => ({
      name: `${status} still in the open index → close`,
      batch: { status },
      want: { kind: 'close', reason: 'terminal' } as const,
    })),
    {
      name: 'validating → hold (planning)',
      batch: { status: 'validating' },
      want: { kind: 'hold', reason: 'planning' },
    },
    {
      name: 'validating just under the plan grace → hold (planning)',
      batch: { status: 'validating', createdAt: NOW - 9_999 },
      want: { kind: 'hold', reason: 'planning' },
    },
    {
      name: 'validating past the plan grace → plan (re-add its plan job; a no-op when it exists)',
      batch: { status: 'validating', createdAt: NOW - 10_000 },
      want: { kind: 'plan', reason: 'validating_past_grace' },
    },
    {
      name: 'validating past expiresAt and the grace → expire',
      batch: { status: 'validating', createdAt: NOW - 60_000, expiresAt: NOW },
      want: { kind: 'expire', from: 'validating', reason: 'past_completion_window' },
    },
    {
      name: 'validating past expiresAt → expire',
      batch: { status: 'validating', expiresAt: NOW },
      want: { kind: 'expire', from: 'validating', reason: 'past_completion_window' },
    },
    {
      name: 'in_progress past expiresAt with chunks left → expire',
      batch: { expiresAt: NOW - 1, counters: { cursor: 4, admitted: 4, settled: 4 } },
      want: { kind: 'expire', from: 'in_progress', reason: 'past_completion_window' },
    },
    {
      name: 'in_progress past expiresAt, all admitted but some running → expire',
      batch: { expiresAt: NOW - 1, counters: { cursor: 10, admitted: 10, settled: 9 } },
      want: { kind: 'expire', from: 'in_progress' },
    },
    {
      name: 'in_progress past expiresAt yet every chunk settled → finalize as completed',
      batch: { expiresAt: NOW - 1, counters: { cursor: 10, admitted: 10, settled: 10 } },
      want: { kind: 'finalize', transition: true, reason: 'all_chunks_settled' },
    },
    {
      name: 'in_progress, free window → admit min(free, remaining)',
      batch: { counters: { cursor: 2, admitted: 2 } },
      queued: 3,
      want: { kind: 'admit', pool: 'p', cursor: 2, count: 5, reason: 'fair_share' },
    },
    {
      name: 'in_progress, fewer chunks left than the window → admit the rest',
      batch: { counters: { cursor: 8, admitted: 8 } },
      want: { kind: 'admit', cursor: 8, count: 2 },
    },
    {
      name: 'in_progress, window full → hold',
      batch: { counters: { cursor: 2, admitted: 2 } },
      queued: 8,
      want: { kind: 'hold', reason: 'window_full' },
    },
    {
      name: 'in_progress, queue over the window (window shrank) → hold',
      batch: {},
      queued: 20,
      want: { kind: 'hold', reason: 'window_full' },
    },
    {
      name: 'in_progress, all admitted, some unsettled → hold',
      batch: { counters: { cursor: 10, admitted: 10, settled: 7 } },
      want: { kind: 'hold', reason: 'chunks_in_flight' },
    },
    {
      name: 'in_progress, all admitted and settled → finalize with transition',
      batch: { counters: { cursor: 10, admitted: 10, settled: 10 } },
      want: { kind: 'finalize', transition: true, reason: 'all_chunks_settled' },
    },
    {
      name: 'in_progress with an empty plan (0 chunks) → finalize',
      batch: { counters: { chunks: 0 } },
      want: { kind: 'finalize', transition: true },
    },
    {
      name: 'in_progress but unplanned → hold (inconsistent)',
      batch: { planned: false },
      want: { kind: 'hold', reason: 'inconsistent' },
    },
    {
      name: 'in_progress while planning → admit from the published chunks only',
      batch: { planned: false, counters: { chunks: 0, plan_chunks: 4, cursor: 1, admitted: 1 } },
      want: { kind: 'admit', cursor: 1, count: 3 },
    },
    {
      name: 'in_progress while planning, every published chunk admitted → hold (planning)',
      batch: { planned: false, counters: { chunks: 0, plan_chunks: 4, cursor: 4, admitted: 4, settled: 4 } },
      want: { kind: 'hold', reason: 'planning' },
    },
    {
      name: 'in_progress while planning past expiresAt → expire',
      batch: { planned: false, expiresAt: NOW - 1, counters: { chunks: 0, plan_chunks: 4, cursor: 2, admitted: 2 } },
      want: { kind: 'expire', from: 'in_progress' },
    },
    {
      name: 'cancelling while still planning, drained → hold until planning ends',
      batch: {
        status: 'cancelling',
        stop: 'cancelled',
        planned: false,
        counters: { chunks: 0, plan_chunks: 4, cursor: 2, admitted: 2, settled: 2 },
      },
      want: { kind: 'hold', reason: 'planning' },
    },
    {
      name: 'finalizing (expired) while still planning, chunks unsettled → withdraw',
      batch: {
        status: 'finalizing',
        stop: 'expired',
        planned: false,
        counters: { chunks: 0, plan_chunks: 4, cursor: 2, admitted: 2, settled: 1 },
      },
      want: { kind: 'withdraw', below: 2 },
    },
    {
      name: 'in_progress with a stop → hold (inconsistent)',
      batch: { stop: 'cancelled' },
      want: { kind: 'hold', reason: 'inconsistent' },
    },
    {
      name: 'cancelling with chunks unsettled → withdraw those below the cursor',
      batch: { status: 'cancelling', stop: 'cancelled', counters: { cursor: 3, admitted: 3, settled: 1 } },
      want: { kind: 'withdraw', below: 3, reason: 'batch_stopped' },
    },
    {
      name: 'cancelling, drained → finalize (enqueue only)',
      batch: { status: 'cancelling', stop: 'cancelled', counters: { cursor: 3, admitted: 3, settled: 3 } },
      want: { kind: 'finalize', transition: false, reason: 'cancel_drained' },
    },
    {
      name: 'cancelling while still unplanned → finalize',
      batch: { status: 'cancelling', stop: 'cancelled', planned: false, counters: { chunks: 0 } },
      want: { kind: 'finalize', transition: false, reason: 'cancel_drained' },
    },
    {
      name: 'cancelling past expiresAt stays cancelling',
      batch: { status: 'cancelling', stop: 'cancelled', expiresAt: NOW - 1, counters: { admitted: 2, settled: 1 } },
      want: { kind: 'withdraw', reason: 'batch_stopped' },
    },
    {
      name: 'cancelling with more settled than admitted (a chunk added as it stopped) → finalize',
      batch: { status: 'cancelling', stop: 'cancelled', counters: { cursor: 3, admitted: 3, settled: 4 } },
      want: { kind: 'finalize', transition: false },
    },
    {
      name: 'finalizing (expired) with chunks unsettled → withdraw',
      batch: { status: 'finalizing', stop: 'expired', counters: { cursor: 5, admitted: 5, settled: 2 } },
      want: { kind: 'withdraw', below: 5, reason: 'batch_stopped' },
    },
    {
      name: 'finalizing, drained → finalize (enqueue again; the job id dedupes)',
      batch: { status: 'finalizing', stop: 'expired', counters: { cursor: 5, admitted: 5, settled: 5 } },
      want: { kind: 'finalize', transition: false, reason: 'finalizing' },
    },
  ];

  it.each(cases)('$name', ({ batch: fixture, queued, want }) => {
    const b = batch(fixture);
    expect(decideOne(b, queued)).toMatchObject({ batchId: b.spec.id, ...want });
  });

  it('holds a batch whose pool could not be counted', () => {
    const b = batch({ pool: 'q' });
    const [d] = decideBatches({ batches: [b], queued: new Map() }, { windowPerPool: 8 }, NOW).decisions;
    expect(d).toEqual({ kind: 'hold', batchId: b.spec.id, reason: 'window_unknown' });
  });
});

describe('decideBatches: sharing a pool window', () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `batch_${String(i).padStart(20, '0')}`);

  // The default share is fair across tenants (fair-share.ts, tested there); within one tenant it keeps
  // the order priorityFirst had: higher priority, then older.
  it("serves one tenant's batches in its own order: higher priority first, then older", () => {
    const [a, b, c] = ids(3);
    const batches = [
      batch({ id: a, priority: 0, counters: { chunks: 10 } }),
      batch({ id: b, priority: 5, counters: { chunks: 3 } }),
      batch({ id: c, priority: 0, counters: { chunks: 10 } }),
    ];
    const { decisions: ds } = decideBatches({ batches, queued: new Map([['p', 1]]) }, { windowPerPool: 8 }, NOW);
    expect(ds.map((d) => [d.batchId, d.kind, d.kind === 'admit' ? d.count : 0])).toEqual([
      [a, 'admit', 4],
      [b, 'admit', 3],
      [c, 'hold', 0],
    ]);
    expect(ds[2]).toMatchObject({ reason: 'window_full' });
  });

  it('splits the window between tenants, not batches (priority does not rank tenants)', () => {
    const [a1, a2, a3, b1] = ids(4);
    const batches = [
      batch({ id: a1, tenant: 'a', priority: 9 }),
      batch({ id: a2, tenant: 'a', priority: 9 }),
      batch({ id: a3, tenant: 'a', priority: 9 }),
      batch({ id: b1, tenant: 'b', priority: 0 }),
    ];
    const { decisions: ds } = decideBatches({ batches, queued: new Map([['p', 0]]) }, { windowPerPool: 8 }, NOW);
    expect(ds).toMatchObject([
      { batchId: a1, kind: 'admit', count: 4, reason: 'fair_share' },
      { batchId: a2, kind: 'hold', reason: 'window_full' },
      { batchId: a3, kind: 'hold', reason: 'window_full' },
      { batchId: b1, kind: 'admit', count: 4, reason: 'fair_share' },
    ]);
  });

  it('says deadline_boost for a batch in the last part of its completion window', () => {
    const [a, b] = ids(2);
    const batches = [
      batch({ id: a, tenant: 'a' }),
      // 24 h window, 1 h left: under the default 10%.
      batch({ id: b, tenant: 'b', createdAt: NOW - 23 * 3_600_000, expiresAt: NOW + 3_600_000 }),
    ];
    const { decisions: ds } = decideBatches({ batches, queued: new Map([['p', 0]]) }, { windowPerPool: 8 }, NOW);
    expect(ds).toMatchObject([
      { batchId: a, kind: 'hold', reason: 'window_full' },
      { batchId: b, kind: 'admit', count: 8, reason: 'deadline_boost' },
    ]);
  });

  it('carries the share state per pool: in with the snapshot, out with the decisions', () => {
    const [a, b] = ids(2);
    const batches = [batch({ id: a, tenant: 'a' }), batch({ id: b, tenant: 'b' })];
    const q: ShareState = { credit: { z: -3 }, next: null, midTurn: false };
    const first = decideBatches(
      { batches, queued: new Map([['p', 7]]), share: new Map([['q', q]]) },
      { windowPerPool: 8 },
      NOW,
    );
    expect(first.decisions).toMatchObject([{ batchId: a, kind: 'admit', count: 1 }, { kind: 'hold' }]);
    expect(first.share.get('q')).toBe(q); // a pool without candidates keeps its state
    expect(first.share.get('p')).toEqual({ credit: {}, next: 'b', midTurn: false });
    // The next pass resumes the rotation at b.
    const second = decideBatches(
      { batches, queued: new Map([['p', 7]]), share: first.share },
      { windowPerPool: 8 },
      NOW,
    );
    expect(second.decisions).toMatchObject([{ kind: 'hold' }, { batchId: b, kind: 'admit', count: 1 }]);
    // A full window leaves the state as it was.
    const full = decideBatches(
      { batches, queued: new Map([['p', 8]]), share: second.share },
      { windowPerPool: 8 },
      NOW,
    );
    expect(full.share.get('p')).toEqual(second.share.get('p'));
  });

  it('keeps each pool to its own window', () => {
    const [a, b] = ids(2);
    const batches = [batch({ id: a, pool: 'p' }), batch({ id: b, pool: 'q' })];
    const queued = new Map([
      ['p', 6],
      ['q', 0],
    ]);
    const { decisions: ds } = decideBatches({ batches, queued }, { windowPerPool: 8 }, NOW);
    expect(ds).toMatchObject([
      { batchId: a, kind: 'admit', pool: 'p', count: 2 },
      { batchId: b, kind: 'admit', pool: 'q', count: 8 },
    ]);
  });

  it.each([
    ['a budget of 6 → window 12', 6, 5, 7],
    ['a budget of 0 → window 2 (a chunk ready for when real-time eases)', 0, 0, 2],
    ['a budget of 0 with 2 queued → nothing', 0, 2, 0],
    ['a budget of 40 → window 80, past windowPerPool', 40, 10, 70],
  ])('sizes the window from the pool budget: %s', (_name, budget, queued, admitted) => {
    const [a] = ids(1);
    const { decisions: ds } = decideBatches(
      {
        batches: [batch({ id: a, counters: { chunks: 1000 } })],
        queued: new Map([['p', queued]]),
        windows: new Map([['p', windowFor(budget)]]),
      },
      { windowPerPool: 8 },
      NOW,
    );
    expect(ds[0]).toMatchObject(
      admitted > 0 ? { kind: 'admit', count: admitted } : { kind: 'hold', reason: 'window_full' },
    );
  });

  it('takes a share policy and clamps what it grants to the window and the batch', () => {
    const [a, b] = ids(2);
    const greedy: AdmissionShare = (cands, _free, state) => ({
      grants: new Map(cands.map((c) => [c.batchId, { count: 100, reason: 'fair_share' }])),
      state,
    });
    const batches = [batch({ id: a, counters: { chunks: 5 } }), batch({ id: b })];
    const { decisions: ds } = decideBatches(
      { batches, queued: new Map([['p', 0]]) },
      { windowPerPool: 8, share: greedy },
      NOW,
    );
    expect(ds).toMatchObject([
      { batchId: a, kind: 'admit', count: 5 },
      { batchId: b, kind: 'admit', count: 3 },
    ]);
  });
});

describe('poolsToCount', () => {
  it('names only pools with a batch that may take chunks', () => {
    const batches = [
      batch({ pool: 'a' }),
      batch({ pool: 'a', counters: { cursor: 2 } }),
      batch({ pool: 'b', counters: { cursor: 10 } }),
      batch({ pool: 'c', status: 'validating' }),
      batch({ pool: 'd', status: 'cancelling', stop: 'cancelled' }),
    ];
    expect(poolsToCount(batches)).toEqual(['a']);
  });
});

describe('failedChunkReason', () => {
  it('names a chunk BullMQ failed by its stalled limit worker_lost, anything else internal, with the job’s words', () => {
    expect(failedChunkReason('job stalled more than allowable limit')).toBe(
      'worker_lost: job stalled more than allowable limit',
    );
    expect(failedChunkReason('Missing lock for job x')).toBe('internal: Missing lock for job x');
    expect(failedChunkReason(undefined)).toBe('internal: its job failed without a reason');
    expect(failedChunkReason('  ')).toBe('internal: its job failed without a reason');
  });
});
