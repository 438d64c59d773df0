import { describe, expect, it } from 'vitest';
import { autoscalePolicySchema, resolvePolicy, type AutoscalePolicyInput } from '../../../common/autoscale/policy.ts';
import { decide, type DecideResult } from '../../../common/autoscale/decide.ts';
import { forecastAt, forecastHorizon } from '../../../common/autoscale/demand.ts';
import { emptyQueueCounts, type AutoscaleState, type PoolSnapshot } from '../../../common/autoscale/types.ts';

const T0 = Date.parse('2026-12-07T10:00:00Z'); // a Monday
const S = 1000;

function policyOf(p: AutoscalePolicyInput = {}) {
  return resolvePolicy(autoscalePolicySchema.parse({ capacityHint: 1000, ...p }), { firstTokenObjectiveMs: 1000 });
}

type SnapshotPatch = Partial<Omit<PoolSnapshot, 'realtime' | 'queues' | 'bulk' | 'training'>> & {
  realtime?: Partial<PoolSnapshot['realtime']>;
  queues?: Partial<{ [K in keyof PoolSnapshot['queues']]: Partial<PoolSnapshot['queues'][K]> }>;
  bulk?: Partial<PoolSnapshot['bulk']>;
  training?: Partial<PoolSnapshot['training']>;
};

/** A pool of `replicas` ready workers serving `rt` real-time units/s, patched by `p`. */
function snap(at: number, replicas: number, rt: number, p: SnapshotPatch = {}): PoolSnapshot {
  return {
    pool: 'default',
    at,
    ...p,
    replicas: p.replicas ?? { desired: replicas, ready: replicas },
    workers: p.workers ?? { ready: replicas, starting: 0, draining: 0 },
    queues: {
      rt: { ...emptyQueueCounts(), ...p.queues?.rt },
      bulk: { ...emptyQueueCounts(), ...p.queues?.bulk },
      train: { ...emptyQueueCounts(), ...p.queues?.train },
    },
    realtime: {
      unitsPerSecond: rt,
      requestsPerSecond: rt / 100,
      firstTokenMs: rt > 0 ? 200 : undefined,
      samples: rt > 0 ? 100 : 0,
      oldestWaitingMs: 0,
      ...p.realtime,
    },
    capacity: p.capacity,
    bulk: { unitsPerRecord: 100, unitsPerSecond: 0, batches: [], ...p.bulk },
    training: { slotsPerReplica: 0, slotsHeld: 0, waitingGangs: [], replicasWithRanks: 0, ...p.training },
  };
}

/**
 * Runs decide() every `everyMs` from T0 over `steps` passes, the actuator applying each decision
 * at once (ready = desired), with real-time load `load(t)` (units/s at t seconds).
 */
function run(
  policy: ReturnType<typeof policyOf>,
  steps: number,
  load: (t: number) => number,
  opts: { start?: number; everyMs?: number; patch?: (t: number) => SnapshotPatch } = {},
): DecideResult[] {
  const everyMs = opts.everyMs ?? 5 * S;
  let replicas = opts.start ?? 1;
  let state: AutoscaleState | undefined;
  const out: DecideResult[] = [];
  for (let i = 0; i < steps; i++) {
    const now = T0 + i * everyMs;
    const t = (i * everyMs) / S;
    const r = decide(snap(now, replicas, load(t), opts.patch?.(t)), policy, state, now);
    state = r.state;
    replicas = r.decision.desired;
    out.push(r);
  }
  return out;
}

const desiredOf = (rs: DecideResult[]): number[] => rs.map((r) => r.decision.desired);

describe('decide(): sizing', () => {
  it.each([
    // [load units/s, expected replicas at targetUtilization 0.7 of 1000/replica]
    [0, 1],
    [600, 1],
    [700, 1],
    [701, 2],
    [2000, 3],
    [2800, 4],
    [100_000, 4],
  ])('real-time load %d units/s asks for %d replicas (min 1, max 4)', (load, expected) => {
    const rs = run(policyOf({ scaleUp: { maxStep: 10 } }), 1, () => load);
    expect(rs[0]!.decision.recommendation).toBe(Math.min(4, Math.max(1, expected)));
  });

  it('says which limit set the size', () => {
    expect(run(policyOf(), 1, () => 100_000)[0]!.decision.reason).toBe('max_replicas');
    const capped = run(policyOf({ maxReplicas: 10, cost: { pricePerReplicaHour: 3, maxPerHour: 10 } }), 1, () => 9000);
    expect(capped[0]!.decision).toMatchObject({ recommendation: 3, reason: 'cost_cap', costPerHour: 9 });
    expect(capped[0]!.decision.parts.costCap).toBe(3);
  });

  it('forecasts over the start-up time: a steady ramp is met before it arrives', () => {
    // Load climbs 5 units/s every second; start-up 120 s: the forecast reads 600 units/s ahead.
    const rs = run(policyOf({ maxReplicas: 20, scaleUp: { maxStep: 20 } }), 40, (t) => 5 * t);
    const last = rs.at(-1)!.decision;
    expect(last.realtime.forecastUnitsPerSecond).toBeGreaterThan(last.realtime.nowUnitsPerSecond + 500);
    expect(last.parts.realtime).toBeGreaterThan(Math.ceil(last.realtime.nowUnitsPerSecond / 700));
  });

  it('a falling trend does not forecast below the demand now', () => {
    const rs = run(policyOf({ maxReplicas: 20, scaleUp: { maxStep: 20 } }), 30, (t) => Math.max(0, 3000 - 20 * t));
    for (const r of rs)
      expect(r.decision.realtime.forecastUnitsPerSecond).toBeGreaterThanOrEqual(r.decision.realtime.nowUnitsPerSecond);
  });

  it.each([
    ['no history: now', 0, 0],
    ['30 s of history: 30 s ahead, not 120 s', 30, 30],
    ['120 s of history: the start-up time', 120, 120],
    ['600 s of history: still the start-up time', 600, 120],
  ])('reads the forecast ahead by at most the history it has: %s', (_what, spanS, aheadS) => {
    const history =
      spanS === 0
        ? []
        : [
            { at: T0 - spanS * S, unitsPerSecond: 1 },
            { at: T0, unitsPerSecond: 2 },
          ];
    expect(forecastHorizon(history, T0, 120 * S)).toBe(T0 + aheadS * S);
  });

  it('a warm start with a short steep history does not overshoot (the line is not read beyond its span)', () => {
    // 20 s of demand climbing 20 units/s each second: read 120 s ahead it would say now + 2400.
    const p = policyOf({ maxReplicas: 20, scaleUp: { maxStep: 20 } });
    const rs = run(p, 5, (t) => 1000 + 20 * t);
    const last = rs.at(-1)!.decision;
    expect(last.realtime.forecastUnitsPerSecond).toBeCloseTo(last.realtime.nowUnitsPerSecond + 20 * 20, 0);
  });

  it('fits a line through the demand history', () => {
    const history = [0, 1, 2, 3].map((i) => ({ at: T0 + i * S, unitsPerSecond: 10 + 2 * i }));
    expect(forecastAt(history, T0 + 10 * S)).toBeCloseTo(30);
    expect(forecastAt(history.slice(0, 2), T0 + 10 * S)).toBe(12);
    expect(forecastAt([], T0)).toBe(0);
  });

  it('a real-time miss with no bulk running asks for one more replica', () => {
    const p = policyOf({ maxReplicas: 8, scaleUp: { maxStep: 8 } });
    const r = decide(snap(T0, 2, 1000, { realtime: { firstTokenMs: 4000, samples: 100 } }), p, undefined, T0);
    expect(r.decision.reason).toBe('realtime_objective_miss');
    expect(r.decision.desired).toBeGreaterThanOrEqual(3);
    // No backlog: the replicas were not full of real-time, so their throughput says nothing of capacity.
    expect(r.state.capacity).toMatchObject({ unitsPerSecond: 1000, source: 'hint' });
    // With bulk running the bulk budget deals with it: no extra replica for the miss.
    const withBulk = decide(
      snap(T0, 2, 1000, { realtime: { firstTokenMs: 4000, samples: 100 }, queues: { bulk: { active: 4 } } }),
      p,
      undefined,
      T0,
    );
    expect(withBulk.decision.reason).not.toBe('realtime_objective_miss');
  });

  it('a miss with a backlog bounds the capacity at what the replicas finished, then relaxes back to the base', () => {
    const p = policyOf({ maxReplicas: 8, scaleUp: { maxStep: 8 } });
    const saturated = { realtime: { firstTokenMs: 4000, samples: 100 }, queues: { rt: { wait: 30 } } };
    const r = decide(snap(T0, 2, 1200, saturated), p, undefined, T0);
    expect(r.state.capacity).toEqual({
      unitsPerSecond: 600,
      source: 'objective_miss',
      base: { unitsPerSecond: 1000, source: 'hint' },
    });
    expect(r.decision.parts.realtime).toBeGreaterThanOrEqual(3);
    // Passes without a miss move it 30 % of the way back each, until within 1 % of the base.
    let state = r.state;
    const planned: number[] = [];
    for (let i = 1; i <= 20; i++) {
      state = decide(snap(T0 + i * 5 * S, 3, 1200), p, state, T0 + i * 5 * S).state;
      planned.push(state.capacity.unitsPerSecond);
    }
    expect(planned[0]).toBeCloseTo(600 + 0.3 * 400);
    expect(planned.every((x, i) => i === 0 || x >= planned[i - 1]!)).toBe(true);
    expect(state.capacity).toMatchObject({ unitsPerSecond: 1000, source: 'hint' });
    // A second saturated miss below the relaxed figure bounds it again.
    const again = decide(snap(T0 + 200 * S, 3, 1500, saturated), p, state, T0 + 200 * S);
    expect(again.state.capacity).toMatchObject({ unitsPerSecond: 500, source: 'objective_miss' });
  });

  it('uses measured capacity once a full replica reports it', () => {
    const p = policyOf({ maxReplicas: 10, scaleUp: { maxStep: 10 } });
    const r = decide(snap(T0, 1, 3500, { capacity: { unitsPerSecond: 5000, fullMs: 10_000 } }), p, undefined, T0);
    expect(r.state.capacity).toMatchObject({ unitsPerSecond: 5000, source: 'measured' });
    expect(r.decision.parts.realtime).toBe(1); // 3500 / (5000 × 0.7)
    const next = decide(
      snap(T0 + 5 * S, 1, 3500, { capacity: { unitsPerSecond: 4000, fullMs: 10_000 } }),
      p,
      r.state,
      T0 + 5 * S,
    );
    expect(next.state.capacity.unitsPerSecond).toBeCloseTo(5000 + 0.3 * (4000 - 5000));
  });
});

describe('decide(): pacing', () => {
  it('scales up by at most maxStep per period', () => {
    const p = policyOf({ maxReplicas: 20, scaleUp: { maxStep: 4, periodMs: 15_000 } });
    const d = desiredOf(run(p, 7, () => 13_000, { everyMs: 5 * S }));
    expect(d).toEqual([5, 5, 5, 9, 9, 9, 13]);
  });

  it('scales down only after the stabilization window, then maxStep per period', () => {
    const p = policyOf({ maxReplicas: 8, scaleDown: { stabilizationMs: 60_000, maxStep: 1, periodMs: 30_000 } });
    const rs = run(p, 30, (t) => (t < 20 ? 2000 : 0), { start: 3, everyMs: 10 * S });
    const d = desiredOf(rs);
    // 3 replicas until the last recommendation of 3 (t = 10 s) leaves the 60 s window, then one
    // every 30 s down to min 1.
    expect(d.slice(0, 7)).toEqual([3, 3, 3, 3, 3, 3, 3]);
    expect(d.slice(7)).toEqual([2, 2, 2, 1, ...Array<number>(19).fill(1)]);
    expect(rs[3]!.decision.reason).toBe('stabilizing_down');
  });

  it('does not flap under a load that comes and goes faster than the scale-down window', () => {
    const p = policyOf({ maxReplicas: 8 });
    const d = desiredOf(run(p, 60, (t) => (Math.floor(t / 20) % 2 === 0 ? 2500 : 300), { start: 4 }));
    expect(new Set(d)).toEqual(new Set([4]));
  });

  it('holds up-scaling for the scale-up stabilization window when one is set', () => {
    const p = policyOf({ maxReplicas: 8, scaleUp: { stabilizationMs: 20_000, maxStep: 8 } });
    const rs = run(p, 6, () => 2500, { everyMs: 5 * S });
    expect(rs[0]!.decision.reason).toBe('stabilizing_up');
    expect(desiredOf(rs)).toEqual([1, 1, 1, 1, 4, 4]);
  });
});

describe('decide(): floors, zero and training', () => {
  it('holds a schedule floor inside its cron window only', () => {
    const p = policyOf({
      maxReplicas: 8,
      scaleUp: { maxStep: 8 },
      scaleDown: { stabilizationMs: 0, maxStep: 8 },
      floors: [{ name: 'office', cron: '0 9 * * 1-5', durationMs: 8 * 3600 * S, minReplicas: 3 }],
    });
    const inWindow = decide(snap(T0, 1, 0), p, undefined, T0); // Monday 10:00
    expect(inWindow.decision).toMatchObject({ desired: 3, reason: 'floor' });
    const evening = T0 + 8 * 3600 * S; // 18:00, the window ended at 17:00
    expect(decide(snap(evening, 3, 0), p, undefined, evening).decision).toMatchObject({ desired: 1 });
  });

  it('scales to zero after idleToZeroMs without work, and back on the first job at once', () => {
    const p = policyOf({ minReplicas: 0, idleToZeroMs: 60_000, scaleDown: { stabilizationMs: 0 } });
    const rs = run(p, 20, () => 0, {
      start: 1,
      everyMs: 10 * S,
      patch: (t) => (t >= 150 ? { queues: { bulk: { wait: 1 } } } : {}),
    });
    const d = desiredOf(rs);
    expect(d.slice(0, 6)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(d[6]).toBe(0);
    expect(rs[6]!.decision.reason).toBe('idle_to_zero');
    expect(d.slice(7, 15)).toEqual(Array<number>(8).fill(0));
    expect(d[15]).toBe(1); // t = 150 s: a chunk arrives
    expect(rs[15]!.decision.reason).toBe('wake_from_zero');
  });

  it('never goes to zero while a pool with minReplicas 0 has real-time traffic', () => {
    const p = policyOf({ minReplicas: 0, idleToZeroMs: 0, scaleDown: { stabilizationMs: 0 } });
    expect(new Set(desiredOf(run(p, 20, () => 5, { start: 1 })))).toEqual(new Set([1]));
  });

  it.each([
    // [slots per replica, held, waiting gangs, max, expected training replicas]
    [2, 0, [4], 4, 2],
    [2, 2, [4], 4, 3],
    [2, 0, [10], 4, 0], // a gang larger than the pool can ever be is not chased
    [2, 0, [10, 3], 4, 2],
    [0, 0, [2], 4, 0], // no training slots: nothing to scale for
  ])('training: %d slots/replica, %d held, waiting %j, max %d → %d replicas', (slots, held, waiting, max, expected) => {
    const p = policyOf({ maxReplicas: max, scaleUp: { maxStep: 10 } });
    const s = snap(T0, 1, 0, { training: { slotsPerReplica: slots, slotsHeld: held, waitingGangs: waiting } });
    expect(decide(s, p, undefined, T0).decision.parts.training).toBe(expected);
  });

  it('keeps replicas running training ranks, even above maxReplicas and the cost cap', () => {
    const p = policyOf({ maxReplicas: 2, scaleDown: { stabilizationMs: 0, maxStep: 10 } });
    const s = snap(T0, 3, 0, { training: { slotsPerReplica: 1, slotsHeld: 3, replicasWithRanks: 3 } });
    expect(decide(s, p, undefined, T0).decision).toMatchObject({ desired: 3, reason: 'training_running' });
  });
});

describe('decide(): batch deadlines', () => {
  const p = policyOf({ maxReplicas: 10, startupMs: 120_000, scaleUp: { maxStep: 10 }, bulk: { deadlineSafety: 1 } });

  it('asks for nothing beyond real-time while what real-time leaves finishes the batch in time', () => {
    // 1 replica, 300 units/s real-time: 700 left over; 1,000 records × 100 units in 1 h needs 28 units/s.
    const s = snap(T0, 1, 300, { bulk: { batches: [{ id: 'b1', recordsLeft: 1000, deadlineAt: T0 + 3600 * S }] } });
    expect(decide(s, p, undefined, T0).decision.parts.bulk).toBe(0);
  });

  it('adds the replicas a tight deadline needs, counting their start-up', () => {
    // 600k units in 600 s = 1,000 units/s; the ready replica leaves 700; new ones help for 480 s of it.
    const s = snap(T0, 1, 300, { bulk: { batches: [{ id: 'b1', recordsLeft: 6000, deadlineAt: T0 + 600 * S }] } });
    const d = decide(s, p, undefined, T0).decision;
    // 700 × 600 + n × 1000 × 480 ≥ 600,000 → n = 1.
    expect(d.parts.bulk).toBe(1);
    expect(d.reason).toBe('bulk_deadline');
    expect(d.bulk).toMatchObject({ tightest: 'b1' });
    expect(d.bulk.neededUnitsPerSecond).toBeCloseTo(1000);
  });

  it('orders batches by deadline: a late one behind an early one counts both', () => {
    const early = { id: 'early', recordsLeft: 3000, deadlineAt: T0 + 600 * S };
    const late = { id: 'late', recordsLeft: 3000, deadlineAt: T0 + 700 * S };
    const one = decide(snap(T0, 1, 300, { bulk: { batches: [late] } }), p, undefined, T0).decision.parts.bulk;
    const both = decide(snap(T0, 1, 300, { bulk: { batches: [late, early] } }), p, undefined, T0).decision.parts.bulk;
    expect(both).toBeGreaterThan(one);
  });
});

describe('decide(): missing signals hold', () => {
  const p = policyOf({
    minReplicas: 0,
    maxReplicas: 8,
    idleToZeroMs: 0,
    scaleDown: { stabilizationMs: 0, maxStep: 8 },
  });

  it.each([
    ['a Redis outage', { pool: 'default', missing: 'redis: connection refused' }],
    ['a stale snapshot', snap(T0 - 60 * S, 3, 0)],
    ['ready replicas without heartbeats', snap(T0, 3, 0, { workers: { ready: 0, starting: 0, draining: 0 } })],
  ])('%s: keeps what it had, never moves toward zero', (_what, s) => {
    const before = decide(snap(T0 - 5 * S, 3, 2000), p, undefined, T0 - 5 * S);
    expect(before.decision.desired).toBe(3);
    const r = decide(s, p, before.state, T0);
    expect(r.decision).toMatchObject({ desired: 3, reason: 'hold_missing_signals' });
    expect(r.state).toBe(before.state);
  });
});
