import { describe, expect, it } from 'vitest';
import type { Heartbeat, WorkWindow } from '../../../common/contracts/heartbeat.ts';
import { bucketOf, emptyCounts } from '../../../common/latency-window.ts';
import { poolSnapshot, queueCounts, type PoolSignals } from '../../../common/autoscale/pool-snapshot.ts';
import { emptyQueueCounts } from '../../../common/autoscale/types.ts';

const NOW = 1_800_000_000_000;

function counts(ms: number, n: number): number[] {
  const c = emptyCounts();
  c[bucketOf(ms)] = n;
  return c;
}

function hb(
  id: string,
  p: { state?: Heartbeat['state']; work?: WorkWindow; ttftMs?: number; n?: number; ranks?: number } = {},
): Heartbeat {
  return {
    workerId: id,
    pool: 'default',
    host: 'h',
    pid: 1,
    backend: 'sim',
    lanes: [
      { name: 'realtime', concurrency: 64, inFlight: 0 },
      { name: 'training', concurrency: 1, inFlight: p.ranks ?? 0 },
    ],
    state: p.state ?? 'ready',
    realtime: {
      windowMs: 10_000,
      firstToken: counts(p.ttftMs ?? 100, p.n ?? 50),
      queueWait: emptyCounts(),
      oldestPendingMs: 0,
    },
    work: p.work,
    startedAt: NOW - 60_000,
    seenAt: NOW,
    expiresAt: NOW + 6000,
  };
}

const work = (rt: number, bulkRecords: number, bulkUnits: number, fullMs: number, fullUnits: number): WorkWindow => ({
  windowMs: 10_000,
  realtime: { requests: rt / 100, units: rt },
  bulk: { records: bulkRecords, units: bulkUnits },
  full: { ms: fullMs, units: fullUnits },
});

function signals(heartbeats: Heartbeat[], patch: Partial<PoolSignals> = {}): PoolSignals {
  return {
    pool: 'default',
    at: NOW,
    replicas: { desired: heartbeats.length, ready: heartbeats.length },
    heartbeats,
    queues: { rt: emptyQueueCounts(), bulk: emptyQueueCounts(), train: emptyQueueCounts() },
    oldestQueuedMs: 0,
    batches: [],
    training: { slotsPerReplica: 1, slotsHeld: 0, waitingGangs: [] },
    quantile: 0.99,
    ...patch,
  };
}

describe('poolSnapshot', () => {
  it('adds the workers’ windows into pool rates and one replica’s full capacity', () => {
    const s = poolSnapshot(
      signals([
        hb('a', { work: work(5000, 100, 20_000, 10_000, 30_000) }),
        hb('b', { work: work(3000, 0, 0, 5000, 10_000) }),
      ]),
    );
    expect(s.realtime.unitsPerSecond).toBe(800); // (5000 + 3000) / 10 s
    expect(s.realtime.requestsPerSecond).toBe(8);
    expect(s.bulk).toMatchObject({ unitsPerRecord: 200, unitsPerSecond: 2000 });
    expect(s.capacity).toEqual({ unitsPerSecond: (40_000 * 1000) / 15_000, fullMs: 15_000 });
    expect(s.realtime.samples).toBe(100);
    expect(s.realtime.firstTokenMs).toBeGreaterThan(80);
    expect(s.realtime.firstTokenMs).toBeLessThanOrEqual(125);
  });

  it('counts requests as units for workers without the work field, with no capacity sample', () => {
    const s = poolSnapshot(signals([hb('old', { n: 40 })]));
    expect(s.realtime).toMatchObject({ unitsPerSecond: 4, requestsPerSecond: 4 });
    expect(s.capacity).toBeUndefined();
    expect(s.bulk.unitsPerRecord).toBeUndefined();
  });

  it('counts workers by state and replicas running ranks; the oldest wait is the queue’s or a worker’s', () => {
    const busy = hb('c', { ranks: 1 });
    busy.realtime!.oldestPendingMs = 900;
    const s = poolSnapshot(signals([hb('a'), hb('b', { state: 'draining' }), busy], { oldestQueuedMs: 300 }));
    expect(s.workers).toEqual({ ready: 2, starting: 0, draining: 1 });
    expect(s.training.replicasWithRanks).toBe(1);
    expect(s.realtime.oldestWaitingMs).toBe(900);
    expect(poolSnapshot(signals([])).realtime).toMatchObject({
      firstTokenMs: undefined,
      samples: 0,
      unitsPerSecond: 0,
    });
  });
});

describe('queueCounts', () => {
  it.each([
    [
      { waiting: 3, prioritized: 2, delayed: 5, active: 1 },
      2,
      { wait: 3, prioritized: 2, delayedDue: 2, delayed: 3, active: 1 },
    ],
    [{ wait: 1, delayed: 1 }, 4, { wait: 1, prioritized: 0, delayedDue: 1, delayed: 0, active: 0 }],
    [{}, 0, emptyQueueCounts()],
  ])('%j with %d due → %j', (c, due, expected) => {
    expect(queueCounts(c, due)).toEqual(expected);
  });
});
