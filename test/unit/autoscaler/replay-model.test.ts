import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { autoscalePolicySchema, resolvePolicy } from '../../../common/autoscale/policy.ts';
import { replayPolicy } from '../../../common/autoscale/replay/compare.ts';
import {
  buildEngineCurve,
  curveAt,
  relaxationMs,
  type EngineCurve,
} from '../../../common/autoscale/replay/engine-curve.ts';
import { runPool, type Scaler, type Workload } from '../../../common/autoscale/replay/pool-model.ts';
import { DecideScaler, KedaHpaScaler, StaticScaler } from '../../../common/autoscale/replay/scalers.ts';
import { rampMinutes } from '../../../common/autoscale/replay/summary.ts';
import type { PoolSnapshot } from '../../../common/autoscale/types.ts';
import { buildProgram } from '../../../producer/cli/program.ts';

/** A hand-made curve: 1000 units/s saturated, p99 200 ms alone → 900 ms near saturation, bulk 1000 → 0. */
const curve: EngineCurve = {
  points: [0, 250, 500, 750, 980].map((x) => ({
    rtUnitsPerSecond: x,
    aloneTtftMs: 200 + (x / 980) * 700,
    aloneResidenceMs: 2000,
    withBulkTtftMs: 400 + (x / 980) * 900,
    withBulkResidenceMs: 3000,
    bulkUnitsPerSecond: 1000 - x,
  })),
  rtSaturatedUnitsPerSecond: 1000,
  bulkSaturatedUnitsPerSecond: 1000,
  unitsPerRequest: 100,
  bulkUnitsPerRecord: 10,
  quantile: 0.99,
};
const model = { curve, objectiveMs: 1000, startupMs: 60_000 };

function workload(seconds: number, rt: (s: number) => number, batches: Workload['batches'] = []): Workload {
  const rtUnits = Array.from({ length: seconds }, (_, s) => rt(s));
  return {
    rtUnits,
    rtRequests: rtUnits.map((u) => u / 100),
    batches,
    bulkUnitsPerRecord: 10,
    seconds,
    epochMs: Date.UTC(2024, 0, 1),
  };
}

/** Asks for `to` replicas at `at` ms. */
class StepScaler implements Scaler {
  readonly name = 'step';
  readonly everyMs = 5000;
  readonly seen: PoolSnapshot[] = [];
  constructor(
    readonly initialReplicas: number,
    private readonly at: number,
    private readonly to: number,
  ) {}
  desired(s: PoolSnapshot, now: number): number {
    this.seen.push(s);
    return now - Date.UTC(2024, 0, 1) >= this.at ? this.to : this.initialReplicas;
  }
}

describe('engine curve', () => {
  it('is monotone: more load never reads faster or leaves more bulk', () => {
    const mix = Array.from({ length: 50 }, (_, i) => ({
      promptTokens: 200 + ((i * 37) % 800),
      outputTokens: 50 + (i % 100),
    }));
    const c = buildEngineCurve({
      mix,
      bulk: { promptTokens: 256, outputTokens: 64 },
      engine: { maxNumSeqs: 32, maxNumBatchedTokens: 1024, chunkedPrefill: true },
      points: 5,
      requestsPerPoint: 200,
    });
    expect(c.rtSaturatedUnitsPerSecond).toBeGreaterThan(0);
    for (let i = 1; i < c.points.length; i++) {
      const [a, b] = [c.points[i - 1]!, c.points[i]!];
      expect(b.rtUnitsPerSecond).toBeGreaterThan(a.rtUnitsPerSecond);
      expect(b.aloneTtftMs).toBeGreaterThanOrEqual(a.aloneTtftMs);
      expect(b.withBulkTtftMs).toBeGreaterThanOrEqual(a.withBulkTtftMs);
      expect(b.bulkUnitsPerSecond).toBeLessThanOrEqual(a.bulkUnitsPerSecond);
    }
    expect(curveAt(curve, 125).aloneTtftMs).toBeCloseTo(
      (curve.points[0]!.aloneTtftMs + curve.points[1]!.aloneTtftMs) / 2,
    );
  });
});

describe('pool model', () => {
  it('replicas asked for are ready only after the start-up time; scale-in is immediate', () => {
    const w = workload(300, () => 500);
    const run = runPool(w, new StepScaler(1, 20_000, 3), model).series;
    expect(run.replicas[19]).toBe(1);
    expect(run.replicas[20]).toBe(3);
    expect(run.ready[79]).toBe(1);
    expect(run.ready[80]).toBe(3);
    const down = runPool(w, new StepScaler(4, 20_000, 2), model).series;
    expect([down.replicas[19], down.replicas[20], down.ready[20]]).toEqual([4, 2, 2]);
  });

  it('a backlog builds above capacity and adds queue wait; the snapshot shows it in `wait`', () => {
    const scaler = new StepScaler(1, Infinity, 1);
    const run = runPool(
      workload(60, () => 1500),
      scaler,
      model,
    );
    expect(run.series.ttftMs[30]!).toBeGreaterThan(10_000);
    const last = scaler.seen.at(-1)!;
    expect(last.queues.rt.wait).toBeGreaterThan(100);
    expect(last.realtime.oldestWaitingMs).toBeGreaterThan(10_000);
    expect(last.realtime.unitsPerSecond).toBeCloseTo(1000);
  });

  it('works batches earliest deadline first with what real-time leaves, and records misses', () => {
    const w = workload(200, () => 250, [
      { id: 'late', records: 100_000, arrivalMs: 0, deadlineMs: 100_000 },
      { id: 'soon', records: 1000, arrivalMs: 0, deadlineMs: 20_000 },
    ]);
    const run = runPool(w, new StaticScaler('s', 1), model);
    const soon = run.batches.find((b) => b.id === 'soon')!;
    expect(soon.late).toBe(false);
    expect(soon.doneMs).toBeLessThan(20_000);
    expect(run.batches.find((b) => b.id === 'late')!.late).toBe(true);
    expect(Math.max(...run.series.ttftMs.filter(Number.isFinite))).toBeLessThanOrEqual(900);
  });
});

/**
 * A slow engine, as a real one is: a request stays 10 s and the replica takes 1 request/s (1000
 * units each), p99 flat to half load and steep toward saturation (as the sim's curves are).
 */
const slow: EngineCurve = {
  ...curve,
  points: [
    [0, 500],
    [250, 500],
    [500, 600],
    [750, 3000],
    [900, 8000],
    [980, 20_000],
  ].map(([x, p99]) => ({
    rtUnitsPerSecond: x!,
    aloneTtftMs: p99!,
    aloneResidenceMs: 10_000,
    withBulkTtftMs: p99!,
    withBulkResidenceMs: 10_000,
    bulkUnitsPerSecond: 1000 - x!,
  })),
  unitsPerRequest: 1000,
};

/** Two replicas of the slow engine at `base` units/s in all, `burst` for `burstS` seconds from 600 s. */
function burstRun(base: number, burst: number, burstS: number, seconds: number): number[] {
  const rtUnits = Array.from({ length: seconds }, (_, s) => (s >= 600 && s < 600 + burstS ? burst : base));
  const w: Workload = {
    rtUnits,
    rtRequests: rtUnits.map((u) => u / 1000),
    batches: [],
    bulkUnitsPerRecord: 10,
    seconds,
    epochMs: Date.UTC(2024, 0, 1),
  };
  return runPool(w, new StaticScaler('two', 2), { ...model, curve: slow }).series.ttftMs;
}

describe('pool model: a burst is not a steady state', () => {
  it("the engine queue's relaxation time: one residence at light load, unbounded toward saturation", () => {
    expect(relaxationMs(slow, 0)).toBe(10_000);
    // 1 / (cμ (1 − √ρ)²), cμ = 1 request/s.
    expect(relaxationMs(slow, 500)).toBeCloseTo(1000 / (1 - Math.sqrt(0.5)) ** 2, 6);
    expect(relaxationMs(slow, 900)).toBeGreaterThan(300_000);
    expect(relaxationMs(slow, 1000)).toBe(Infinity);
  });

  it('a 10 s burst at 1.8× on a pool at 50 % is not read as the 1.8× steady state', () => {
    const p99 = burstRun(1000, 1800, 10, 700);
    expect(p99[599]).toBeCloseTo(600, 0);
    const burst = Math.max(...p99.slice(600, 700));
    // The old model read the 10 s window's rate: the curve at 900 units/s, 8 s.
    expect(burst).toBeLessThan(curveAt(slow, 900).aloneTtftMs / 4);
    expect(burst).toBeGreaterThan(600);
  });

  it('the same load held for 30 minutes is read as its steady state', () => {
    const p99 = burstRun(1000, 1800, 1800, 2400);
    expect(p99[2399]).toBeGreaterThan(0.95 * curveAt(slow, 900).aloneTtftMs);
    expect(p99[2399]).toBeLessThanOrEqual(curveAt(slow, 900).aloneTtftMs);
  });

  it('a sustained overload (above capacity) still reads as one: its backlog wait grows', () => {
    const p99 = burstRun(1000, 2400, 120, 720);
    expect(p99[660]!).toBeGreaterThan(p99[630]!);
    expect(p99[719]!).toBeGreaterThan(curveAt(slow, 980).aloneTtftMs);
  });
});

describe('baselines', () => {
  const policy = resolvePolicy(
    autoscalePolicySchema.parse({ minReplicas: 1, maxReplicas: 8, capacityHint: 1000, startupMs: 60_000 }),
    {
      firstTokenObjectiveMs: 1000,
    },
  );
  const bulkOnly = workload(1800, () => 0, [{ id: 'b', records: 200_000, arrivalMs: 0, deadlineMs: 1_200_000 }]);

  it('(a) KEDA on `wait` never scales for bulk-only load (prioritized chunks are invisible)', () => {
    const a = runPool(
      bulkOnly,
      new KedaHpaScaler('a', { metric: 'wait', targets: { rt: 10, bulk: 1 }, minReplicas: 1, maxReplicas: 8 }, 1),
      model,
    );
    expect(Math.max(...a.series.replicas)).toBe(1);
    expect(a.batches[0]!.late).toBe(true);
  });

  it('(b) on every state scales for it, HPA-paced (max(100 %, 4) per 15 s), and back after 300 s', () => {
    const b = runPool(
      bulkOnly,
      new KedaHpaScaler('b', { metric: 'all', targets: { bulk: 1 }, minReplicas: 0, maxReplicas: 8 }, 1),
      model,
    );
    expect(b.series.replicas[16]).toBe(5);
    expect(Math.max(...b.series.replicas)).toBe(8);
    expect(b.batches[0]!.late).toBe(false);
    const done = b.batches[0]!.doneMs! / 1000;
    // Held for the stabilization window (and KEDA's cooldown), then zero.
    expect(b.series.replicas[Math.ceil(done) + 200]).toBeGreaterThan(0);
    expect(b.series.replicas.at(-1)).toBe(0);
  });

  it('decide() asks for replicas for a deadline that the one replica cannot meet', () => {
    const r = replayPolicy(bulkOnly, new DecideScaler('i', policy, 1, bulkOnly.epochMs), model);
    expect(r.summary.lateBatches).toBe(0);
    expect(r.summary.peakReplicas).toBeGreaterThan(1);
  });

  it('ramps: a rise of more than 10 % over 5 minutes', () => {
    const w = workload(1200, (s) => (s < 600 ? 100 : 200));
    const ramps = rampMinutes(w);
    expect(ramps.slice(0, 10).some(Boolean)).toBe(false);
    expect(ramps.slice(10, 15).every(Boolean)).toBe(true);
  });
});

describe('interfleet autoscale simulate', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'autoscale-simulate-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const trace = path.join(dir, 'trace.csv');
  const rows = Array.from({ length: 600 }, (_, i) => `${(i * 0.5 + (i > 300 ? i * 0.2 : 0)).toFixed(2)},300,40`);
  writeFileSync(trace, `seconds,promptTokens,outputTokens\n${rows.join('\n')}\n`);
  const policy = path.join(dir, 'policy.yaml');
  writeFileSync(policy, 'maxReplicas: 4\nstartupMs: 30000\ncapacityHint: 3000\nrealtime: { objectiveMs: 2000 }\n');
  const batches = path.join(dir, 'batches.yaml');
  writeFileSync(batches, 'batches:\n  - { id: b1, records: 2000, arrivalS: 10, windowS: 300 }\n');

  async function cli(args: string[]): Promise<{ out: string; code: number | undefined }> {
    let out = '';
    let code: number | undefined;
    const program = buildProgram(
      {
        stdout: { write: (s: string) => ((out += s), true) },
        client: () => {
          throw new Error('simulate must not call the API');
        },
        now: Date.now,
        setExitCode: (c) => (code = c),
      },
      {},
    );
    program.exitOverride();
    await program.parseAsync(['node', 'interfleet', 'autoscale', 'simulate', ...args]);
    return { out, code };
  }

  it('replays a tiny trace with every baseline, prints the table and writes the SVG', async () => {
    const svg = path.join(dir, 'out.svg');
    const { out, code } = await cli([
      '--trace',
      trace,
      '--policy',
      policy,
      '--batches',
      batches,
      '--svg',
      svg,
      '--curve-requests',
      '150',
    ]);
    expect(code).toBeUndefined();
    for (const label of ['interfleet', '(a) keda wait', '(b) keda all states', '(c) static', '(d) dedicated pools']) {
      expect(out).toContain(label);
    }
    expect(out).toMatch(/replica-h/);
    const plot = readFileSync(svg, 'utf8');
    expect(plot).toMatch(/^<svg [\s\S]*<\/svg>\n$/);
    for (const panel of ['load', 'replicas', 'first-token p99']) expect(plot).toContain(panel);
    expect(plot).toContain('objective 2000 ms');
  }, 10_000);

  it('--json prints the summaries', async () => {
    const { out } = await cli([
      '--trace',
      trace,
      '--policy',
      policy,
      '--json',
      '--compress',
      '2',
      '--curve-requests',
      '150',
    ]);
    const json = JSON.parse(out) as { results: Array<{ key: string; replicaHours: number }> };
    expect(json.results.map((r) => r.key)).toEqual(['interfleet', 'a', 'b', 'c', 'd']);
  }, 10_000);

  it('says clearly what is wrong with its inputs', async () => {
    const bad = path.join(dir, 'bad.csv');
    writeFileSync(bad, 'seconds,promptTokens,outputTokens\n1,x,2\n');
    expect(await cli(['--trace', bad, '--policy', policy])).toMatchObject({
      code: 1,
      out: expect.stringContaining('bad.csv:2: promptTokens'),
    });
    expect(await cli(['--trace', trace, '--policy', policy, '--compress', '0'])).toMatchObject({
      code: 1,
      out: expect.stringContaining('--compress must be above 0'),
    });
    expect(await cli(['--trace', trace, '--policy', policy, '--pool', 'nope'])).toMatchObject({
      code: 1,
      out: expect.stringContaining('no autoscale policy for pool "nope"'),
    });
  });
});
