import { describe, expect, it } from 'vitest';
import { workWindowSchema } from '../../../common/contracts/heartbeat.ts';
import type { TaskOutput } from '../../../common/contracts/tasks.ts';
import { WorkMeter, workUnits } from '../../../gpu-worker/work-window.ts';

// 1000 ms in 10 slices of 100 ms: the live slices span 900 ms just after a slice begins, 1000 just before.
const meter = (): WorkMeter => new WorkMeter(1000, 10);

describe('work window', () => {
  it.each<[string, TaskOutput, number]>([
    [
      'a chat: prompt plus completion tokens',
      { task: 'chat', text: 'x', finishReason: 'stop', usage: { promptTokens: 7, completionTokens: 5 } },
      12,
    ],
    ['a sentiment: 1', { task: 'sentiment', label: 'neutral', score: 0 }, 1],
    ['a summary: 1', { task: 'summarize', summary: '', sentences: [] }, 1],
  ])('counts the units of %s', (_name, output, units) => {
    expect(workUnits(output)).toBe(units);
  });

  it('sums real-time and bulk work over the live slices and names the span they cover', () => {
    const w = meter();
    w.realtime(12, 50);
    w.realtime(1, 150);
    w.bulk(3, 30, 250);
    const got = w.window(920);
    expect(workWindowSchema.parse(got)).toEqual(got);
    expect(got).toEqual({
      windowMs: 920,
      realtime: { requests: 2, units: 13 },
      bulk: { records: 3, units: 30 },
      full: { ms: 0, units: 0 },
    });
    // Just after a slice begins the span is one slice short of the window.
    expect(w.window(1000).windowMs).toBe(900);
  });

  it.each([
    // [read at, real-time requests left (recorded at 50 and 150), bulk records left (at 250)]
    [999, 2, 1],
    [1000, 1, 1], // the slice [0, 100) has left: its request with it
    [1100, 0, 1],
    [1200, 0, 0],
    [5000, 0, 0],
  ])('lets work age out a slice at a time (read at %i)', (at, requests, records) => {
    const w = meter();
    w.realtime(1, 50);
    w.realtime(1, 150);
    w.bulk(1, 1, 250);
    const got = w.window(at);
    expect(got.realtime.requests).toBe(requests);
    expect(got.bulk.records).toBe(records);
  });

  it('reuses a slice for later work without keeping what it held', () => {
    const w = meter();
    w.realtime(5, 50);
    w.realtime(7, 1050); // the same slot, a window later
    expect(w.window(1060).realtime).toEqual({ requests: 1, units: 7 });
  });

  it('counts full time while a chunk runs, and units finished then as full units', () => {
    const w = meter();
    w.realtime(4, 100); // before: not full
    w.chunkStarted(200);
    w.realtime(6, 250);
    w.bulk(2, 20, 300);
    w.chunkStopped(400);
    w.realtime(8, 450); // after: not full
    expect(w.window(500)).toMatchObject({
      realtime: { requests: 3, units: 18 },
      bulk: { records: 2, units: 20 },
      full: { ms: 200, units: 26 },
    });
  });

  it('counts the time of overlapping chunks once, from the first start to the last stop', () => {
    const w = meter();
    w.chunkStarted(100);
    w.chunkStarted(150);
    w.chunkStopped(300); // one still runs: still full
    w.realtime(3, 350);
    w.chunkStopped(420);
    w.realtime(5, 450);
    expect(w.window(500).full).toEqual({ ms: 320, units: 3 });
  });

  it('ignores a stop without a start', () => {
    const w = meter();
    w.chunkStopped(100);
    w.chunkStarted(200);
    w.chunkStopped(250);
    w.chunkStopped(300);
    expect(w.window(400).full.ms).toBe(50);
  });

  it('counts a running chunk up to the read, and again from there on the next read', () => {
    const w = meter();
    w.chunkStarted(100);
    expect(w.window(250).full.ms).toBe(150);
    expect(w.window(400).full.ms).toBe(300);
    w.chunkStopped(450);
    expect(w.window(600).full.ms).toBe(350);
  });

  it('clips full time to the live slices: a long chunk never reads as more than the span', () => {
    const w = meter();
    w.chunkStarted(0);
    w.bulk(1, 10, 500); // ages out with its slice
    expect(w.window(3050)).toMatchObject({ windowMs: 950, full: { ms: 950, units: 0 } });
    w.chunkStopped(3500);
    // The live slices at 3600 start at 2700: the chunk was full for 800 ms of them.
    expect(w.window(3600)).toMatchObject({ windowMs: 900, full: { ms: 800, units: 0 } });
    expect(w.window(4400).full.ms).toBe(0);
  });

  it('drops the older part of a long interval when it stops, and keeps the part still live', () => {
    const w = meter();
    w.chunkStarted(0);
    w.chunkStopped(2550); // never read while it ran
    // Live at 2600: [1700, 2600]; full from 1700 to 2550.
    expect(w.window(2600).full.ms).toBe(850);
  });

  it('splits full time across slices so that each part ages out with its own slice', () => {
    const w = meter();
    w.chunkStarted(50);
    w.chunkStopped(350); // 50 ms in [0,100), 100 in each of the next two, 50 in [300,400)
    expect(w.window(999).full.ms).toBe(300);
    expect(w.window(1000).full.ms).toBe(250);
    expect(w.window(1150).full.ms).toBe(150);
    expect(w.window(1250).full.ms).toBe(50);
    expect(w.window(1300).full.ms).toBe(0);
  });
});
