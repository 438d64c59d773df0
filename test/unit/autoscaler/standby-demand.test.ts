/**
 * demandFromRecord: what a standby scheduler serves KEDA from the leader's autoscale explain record.
 * The record written by a real leader is read back in test/integration/autoscale-loop.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { AutoscaleExplanation } from '../../../common/contracts/explain.ts';
import { demandFromRecord } from '../../../scheduler/autoscaler/standby-demand.ts';

const AT = 1_700_000_000_000;

function record(served: AutoscaleExplanation['served']): string {
  const r: AutoscaleExplanation = {
    pool: 'default',
    at: AT,
    epoch: 3,
    actuator: 'kubernetes',
    replicas: { desired: 2, ready: 2, min: 0, max: 8 },
    decision: { at: AT, desired: 2, previous: 2, recommendation: 2, reason: 'realtime_forecast' },
    parts: { realtime: 2, bulk: 0, training: 0, running: 0, floor: 0, costCap: null },
    realtime: { nowUnitsPerSecond: 10, forecastUnitsPerSecond: 12, objectiveMs: 2500, firstTokenMs: 300 },
    capacity: { unitsPerSecond: 100, source: 'measured' },
    bulk: { neededUnitsPerSecond: 0, tightest: null },
    served,
    costPerHour: 8.2,
    history: [],
  };
  return JSON.stringify(r);
}

describe('demandFromRecord', () => {
  const cases: Array<{ what: string; raw: string | null; now: number; want: unknown }> = [
    {
      what: 'a fresh record',
      raw: record({ desired: 2, active: true }),
      now: AT + 1000,
      want: { desired: 2, active: true },
    },
    {
      what: 'at the age limit',
      raw: record({ desired: 0, active: false }),
      now: AT + 15_000,
      want: { desired: 0, active: false },
    },
    {
      what: 'past the age limit (no leader)',
      raw: record({ desired: 2, active: true }),
      now: AT + 15_001,
      want: undefined,
    },
    { what: 'nothing served (the leader knew nothing)', raw: record(null), now: AT, want: undefined },
    { what: "an older leader's record without `served`", raw: record(undefined), now: AT, want: undefined },
    { what: 'no record', raw: null, now: AT, want: undefined },
    { what: 'not JSON', raw: '{"pool":', now: AT, want: undefined },
    {
      what: 'another shape',
      raw: JSON.stringify({ pool: 'default', served: { desired: 2, active: true } }),
      now: AT,
      want: undefined,
    },
  ];
  it.each(cases)('$what', ({ raw, now, want }) => {
    expect(demandFromRecord(raw, now, 15_000)).toEqual(want);
  });
});
