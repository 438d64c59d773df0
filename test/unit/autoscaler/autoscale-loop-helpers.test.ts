/**
 * The pure helpers of the autoscaling pass (scheduler/autoscaler/autoscale-loop.ts): the busy slots
 * the actuator picks scale-in victims by, and what an open batch still holds for the demand model.
 */
import { describe, expect, it } from 'vitest';
import type { BatchState, BatchStatus } from '../../../common/batch/batch-state.ts';
import type { Heartbeat } from '../../../common/contracts/heartbeat.ts';
import { busySlots, recordsLeft } from '../../../scheduler/autoscaler/autoscale-loop.ts';

const NOW = 1_800_000_000_000;

function hb(workerId: string, lanes: Heartbeat['lanes']): Heartbeat {
  return {
    workerId,
    pool: 'p',
    host: 'h',
    pid: 1,
    backend: 'echo',
    lanes,
    state: 'ready',
    startedAt: NOW - 60_000,
    seenAt: NOW,
    expiresAt: NOW + 6000,
  };
}

describe('busySlots', () => {
  it('is empty for no heartbeats', () => {
    expect(busySlots([])).toEqual(new Map());
  });

  it('sums in-flight work over the lanes, a training rank weighing 1000 slots', () => {
    const busy = busySlots([
      hb('rt-only', [
        { name: 'realtime', concurrency: 8, inFlight: 3 },
        { name: 'bulk', concurrency: 2, inFlight: 0 },
      ]),
      hb('mixed', [
        { name: 'realtime', concurrency: 8, inFlight: 2 },
        { name: 'bulk', concurrency: 2, inFlight: 2 },
        { name: 'training', concurrency: 2, inFlight: 1 },
      ]),
      hb('ranks', [{ name: 'training', concurrency: 4, inFlight: 2 }]),
    ]);
    expect(busy).toEqual(
      new Map([
        ['rt-only', 3],
        ['mixed', 1004],
        ['ranks', 2000],
      ]),
    );
  });

  it('keeps idle workers with 0 (known idle, not unknown) and counts concurrency for nothing', () => {
    const busy = busySlots([
      hb('idle', [
        { name: 'realtime', concurrency: 64, inFlight: 0 },
        { name: 'training', concurrency: 1, inFlight: 0 },
      ]),
      hb('no-lanes', []),
    ]);
    expect(busy.get('idle')).toBe(0);
    expect(busy.get('no-lanes')).toBe(0);
    expect(busy.size).toBe(2);
  });

  it('ranks one training rank above any realistic amount of short work', () => {
    const busy = busySlots([
      hb('rank', [{ name: 'training', concurrency: 1, inFlight: 1 }]),
      hb('full', [
        { name: 'realtime', concurrency: 512, inFlight: 512 },
        { name: 'bulk', concurrency: 64, inFlight: 64 },
      ]),
    ]);
    expect(busy.get('rank')!).toBeGreaterThan(busy.get('full')!);
  });
});

function batch(
  p: {
    status?: BatchStatus;
    stop?: BatchState['stop'];
    planned?: boolean;
  } & Partial<BatchState['counters']> = {},
): BatchState {
  const { status = 'in_progress', stop = null, planned = true, ...counters } = p;
  return {
    spec: {
      id: 'batch_00000000000000000001',
      endpoint: '/v1/infer',
      model: 'p',
      input: 'file:///in.jsonl',
      outputPrefix: 'file:///out/',
      completionWindow: '24h',
      createdAt: NOW,
      expiresAt: NOW + 86_400_000,
      metadata: null,
      priority: 0,
      tenant: 'default',
      source: 'api',
    },
    status,
    stop,
    planned,
    plan: null,
    errors: [],
    timestamps: {},
    counters: {
      total: 0,
      completed: 0,
      failed: 0,
      chunks: 0,
      plan_chunks: 0,
      cursor: 0,
      plan_byte: 0,
      admitted: 0,
      settled: 0,
      not_run: 0,
      ...counters,
    },
    files: { output: null, error: null, manifest: null },
  };
}

describe('recordsLeft', () => {
  it('is the total less what completed or failed once planned (chunkLines plays no part)', () => {
    const b = batch({ total: 12_345, completed: 2000, failed: 45, chunks: 3, plan_chunks: 3 });
    expect(recordsLeft(b, 5000)).toBe(10_300);
    expect(recordsLeft(b, 1)).toBe(10_300);
  });

  it('is 0 for a planned batch whose every record is done', () => {
    expect(recordsLeft(batch({ total: 100, completed: 90, failed: 10 }), 5000)).toBe(0);
  });

  it('estimates a batch still being planned from the chunks published so far', () => {
    // total is unknown (0) until planning ends: plan_chunks × chunkLines is the lower bound.
    const b = batch({ planned: false, total: 0, plan_chunks: 4, completed: 1500, failed: 500 });
    expect(recordsLeft(b, 1000)).toBe(2000);
    expect(recordsLeft(b, 5000)).toBe(18_000);
  });

  it('is 0 for a batch with nothing published yet (validating, or planning its first piece)', () => {
    expect(recordsLeft(batch({ status: 'validating', planned: false }), 5000)).toBe(0);
    expect(recordsLeft(batch({ status: 'in_progress', planned: false, plan_chunks: 0 }), 5000)).toBe(0);
  });

  it('never goes below 0 when chunks were shorter than chunkLines (the byte cap)', () => {
    // 2 chunks published, cut by bytes to 300 lines each, all done: the estimate (2 × 1000) is
    // above the truth, and the reverse (completed above the estimate) must not go negative.
    expect(recordsLeft(batch({ planned: false, plan_chunks: 2, completed: 600 }), 1000)).toBe(1400);
    expect(recordsLeft(batch({ planned: false, plan_chunks: 2, completed: 2500 }), 1000)).toBe(0);
    expect(recordsLeft(batch({ total: 10, completed: 8, failed: 5 }), 5000)).toBe(0);
  });

  it.each<BatchStatus>(['completed', 'failed', 'expired', 'cancelled', 'cancelling', 'finalizing'])(
    'is 0 for a %s batch, whatever its counters say',
    (status) => {
      expect(recordsLeft(batch({ status, total: 1000, completed: 10, plan_chunks: 1 }), 5000)).toBe(0);
      expect(recordsLeft(batch({ status, planned: false, plan_chunks: 3 }), 5000)).toBe(0);
    },
  );

  it.each(['cancelled', 'expired'] as const)(
    'is 0 once admission stopped (stop=%s) while still in progress',
    (stop) => {
      // A stopped batch is still planned to the end (finalisation needs the whole plan), but runs no more.
      expect(recordsLeft(batch({ stop, total: 1000, completed: 10 }), 5000)).toBe(0);
      expect(recordsLeft(batch({ stop, planned: false, plan_chunks: 5 }), 5000)).toBe(0);
    },
  );
});
