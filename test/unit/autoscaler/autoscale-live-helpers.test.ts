import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../common/config.ts';
import { autoscalePolicySchema } from '../../../common/autoscale/policy.ts';
import { minuteAttainment, replicaHours, startupTimes, withinTolerance } from '../../bench/autoscale-live-measure.ts';
import { compressPolicy, liveConfigYaml } from '../../bench/autoscale-live-setup.ts';

describe('bench:autoscale-live measurements', () => {
  it('integrates replicas sample-and-hold over the window', () => {
    const s = [
      { at: -30_000, desired: 1, ready: 1 },
      { at: 1_800_000, desired: 3, ready: 1 },
      { at: 2_700_000, desired: 2, ready: 2 },
    ];
    // 1 replica for 30 min, 3 for 15 min, 2 for the last 15 min of the hour.
    expect(replicaHours(s, 0, 3_600_000)).toBeCloseTo(0.5 + 0.75 + 0.5, 9);
    expect(replicaHours(s, 0, 900_000)).toBeCloseTo(0.25, 9);
    expect(replicaHours([], 0, 3_600_000)).toBe(0);
  });

  it.each([
    // first-token times of one minute's requests (undefined: refused) → p99 and within 1000 ms
    { name: 'all fast', ms: [100, 200, 900], p99: 900, within: 1 },
    { name: 'one slow of three', ms: [100, 200, 1500], p99: 1500, within: 0 },
    { name: 'one refused', ms: [100, undefined], p99: Number.POSITIVE_INFINITY, within: 0 },
    { name: 'one slow in 200 is below the p99', ms: [...Array<number>(199).fill(50), 5000], p99: 50, within: 1 },
    {
      name: 'three slow in 200 reach it',
      ms: [...Array<number>(197).fill(50), 5000, 5000, 5000],
      p99: 5000,
      within: 0,
    },
  ])('minute p99 with $name', ({ ms, p99, within }) => {
    const got = minuteAttainment(
      ms.map((firstTokenMs, i) => ({ arrivalMs: 60_000 + i, firstTokenMs })),
      3,
      1000,
    );
    expect(got.p99[1]).toBe(p99);
    expect(got).toMatchObject({ minutes: 1, within, share: within });
    // Minutes without traffic are not counted.
    expect(got.p99[0]).toBeNaN();
    expect(got.p99[2]).toBeNaN();
  });

  it('bins requests by their arrival minute and ignores those outside the window', () => {
    const got = minuteAttainment(
      [
        { arrivalMs: 59_999, firstTokenMs: 3000 },
        { arrivalMs: 60_000, firstTokenMs: 10 },
        { arrivalMs: 500_000, firstTokenMs: 99_999 },
      ],
      2,
      1000,
    );
    expect(got.p99).toEqual([3000, 10]);
    expect(got).toMatchObject({ minutes: 2, within: 1, share: 0.5 });
  });

  it('reads start-ups from rises of desired until ready catches up', () => {
    const s = [
      { at: 0, desired: 1, ready: 1 },
      { at: 1000, desired: 3, ready: 1 },
      { at: 2000, desired: 3, ready: 2 },
      { at: 121_000, desired: 3, ready: 3 },
      { at: 130_000, desired: 4, ready: 3 },
      { at: 140_000, desired: 2, ready: 3 }, // fell before the 4th was ready: not a start-up
    ];
    expect(startupTimes(s)).toEqual([120_000]);
  });

  it.each([
    [1.1, 1, 0.15, true],
    [0.86, 1, 0.15, true],
    [0.84, 1, 0.15, false],
    [0, 0, 0.15, true],
    [0.1, 0, 0.15, false],
  ])('%d against %d within %d: %s', (live, replay, tol, ok) => {
    expect(withinTolerance(live, replay, tol)).toBe(ok);
  });
});

describe('bench:autoscale-live set-up', () => {
  const policy = autoscalePolicySchema.parse({
    minReplicas: 1,
    maxReplicas: 6,
    startupMs: 120_000,
    realtime: { objectiveMs: 2500 },
    capacityHint: 800,
  });

  it('compresses every duration of the policy and scales its rate', () => {
    const c = compressPolicy(policy, 6);
    expect(c).toMatchObject({
      minReplicas: 1,
      maxReplicas: 6,
      startupMs: 20_000,
      realtime: { objectiveMs: 417, forecastWindowMs: 100_000, targetUtilization: 0.7 },
      capacityHint: 4800,
      scaleUp: { stabilizationMs: 0, periodMs: 2500, maxStep: 4 },
      scaleDown: { stabilizationMs: 50_000, periodMs: 10_000, maxStep: 1 },
      idleToZeroMs: 100_000,
      staleAfterMs: 2500,
    });
  });

  it('refuses a policy with cron floors (they fire on the wall clock)', () => {
    const floored = autoscalePolicySchema.parse({
      floors: [{ name: 'office', cron: '0 9 * * *', durationMs: 3_600_000, minReplicas: 1 }],
    });
    expect(() => compressPolicy(floored, 6)).toThrow(/floors/);
  });

  it('writes a launcher config the config loader accepts, sim time and cadences compressed', () => {
    const yaml = liveConfigYaml({ pool: 'chat', policy, compress: 6, objectiveMs: 2500 });
    const config = parseConfig({}, yaml, 'live');
    const pool = config.pools[0]!;
    expect(pool).toMatchObject({ name: 'chat', backend: 'sim', firstTokenObjectiveMs: 417 });
    expect(pool.sim.timeScale).toBeCloseTo(1 / 6, 12);
    // The sim's start-up is model time (timeScale compresses it): the policy's, uncompressed.
    expect(pool.sim.startupMs).toBe(120_000);
    expect(pool.lanes.realtime.concurrency).toBe(pool.sim.maxNumSeqs);
    expect(pool.autoscale).toEqual(compressPolicy(policy, 6));
    expect(config.autoscaler.everyMs).toBe(833);
    expect(config.worker).toMatchObject({ heartbeatMs: 333, latencyWindowMs: 1667 });
  });
});
