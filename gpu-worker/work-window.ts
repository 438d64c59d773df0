/**
 * What this worker did lately, for its heartbeat's `work` field
 * (common/contracts/heartbeat.ts): real-time requests and bulk records
 * finished, their work units, and the time its engine was full with the units
 * finished in that time. The scheduler reads a replica's throughput at
 * capacity from the last two (common/autoscale/pool-snapshot.ts).
 *
 * "Full" here: at least one bulk chunk is running its records on this worker
 * (chunk-runner.ts marks each chunk's start and end); bulk takes every slot
 * real-time leaves free, so the engine then has none idle. Units finished in
 * that time, real-time and bulk alike, are full units.
 *
 * Kept like common/latency-window.ts's LatencyWindow: `slices` rotating
 * sub-totals, so a unit ages out within a slice of leaving the window and
 * recording one is a few additions into a preallocated array (the real-time
 * lane records every request). Full time goes into the slices it fell in, cut
 * at their bounds when a chunk stops or the window is read while one runs, so
 * it ages out with the units it belongs to.
 *
 * The totals cover the live slices, from the oldest one's start to now: one
 * slice less than `windowMs` just after a slice begins, `windowMs` just before
 * the next. That span is what a report names as its `windowMs`, so a rate read
 * from it (total / windowMs) is not biased low by the slice just begun.
 */
import type { WorkWindow } from '../common/contracts/heartbeat.ts';
import type { TaskOutput } from '../common/contracts/tasks.ts';

/** A result's work units: a chat's prompt plus completion tokens, 1 for any other task. */
export function workUnits(output: TaskOutput): number {
  return 'usage' in output ? output.usage.promptTokens + output.usage.completionTokens : 1;
}

// Offsets of a slice's totals in `WorkMeter.totals`.
const RT_REQUESTS = 0;
const RT_UNITS = 1;
const BULK_RECORDS = 2;
const BULK_UNITS = 3;
const FULL_MS = 4;
const FULL_UNITS = 5;
const FIELDS = 6;

export class WorkMeter {
  private readonly sliceMs: number;
  /** FIELDS totals per slice, slice after slice. */
  private readonly totals: Float64Array;
  /** Start time (ms) of the slice each entry holds; a slice older than the window is stale. */
  private readonly sliceStart: Float64Array;
  /** Bulk chunks running now; the engine is full while any is. */
  private chunks = 0;
  /** While full: where the full time not yet in the slices begins. */
  private fullFrom = 0;

  constructor(
    readonly windowMs: number,
    private readonly slices = 10,
  ) {
    this.sliceMs = Math.max(1, Math.ceil(windowMs / slices));
    this.totals = new Float64Array(slices * FIELDS);
    this.sliceStart = new Float64Array(slices).fill(Number.NEGATIVE_INFINITY);
  }

  /** A real-time request finished at `now` with `units` of work. */
  realtime(units: number, now: number): void {
    const at = this.slot(now);
    this.totals[at + RT_REQUESTS]! += 1;
    this.totals[at + RT_UNITS]! += units;
    if (this.chunks > 0) this.totals[at + FULL_UNITS]! += units;
  }

  /** Bulk `records` finished at `now` with `units` of work between them. */
  bulk(records: number, units: number, now: number): void {
    const at = this.slot(now);
    this.totals[at + BULK_RECORDS]! += records;
    this.totals[at + BULK_UNITS]! += units;
    if (this.chunks > 0) this.totals[at + FULL_UNITS]! += units;
  }

  /** A bulk chunk starts running its records: the first one makes the engine full. */
  chunkStarted(now: number): void {
    if (this.chunks++ === 0) this.fullFrom = now;
  }

  /** A bulk chunk is done running (finished, yielded or failed): the last one ends the full time. */
  chunkStopped(now: number): void {
    if (this.chunks === 0) return;
    if (--this.chunks === 0) this.addFullUntil(now);
  }

  /** The totals over the live slices at `now`, and the span they cover. */
  window(now: number): WorkWindow {
    if (this.chunks > 0) this.addFullUntil(now);
    const oldest = this.oldestStart(now);
    const sum = new Float64Array(FIELDS);
    for (let i = 0; i < this.slices; i++) {
      if (this.sliceStart[i]! < oldest) continue;
      for (let f = 0; f < FIELDS; f++) sum[f]! += this.totals[i * FIELDS + f]!;
    }
    return {
      windowMs: Math.max(1, Math.ceil(now - oldest)),
      realtime: { requests: sum[RT_REQUESTS]!, units: sum[RT_UNITS]! },
      bulk: { records: sum[BULK_RECORDS]!, units: sum[BULK_UNITS]! },
      full: { ms: sum[FULL_MS]!, units: sum[FULL_UNITS]! },
    };
  }

  /** Start of the oldest slice still live at `now`. */
  private oldestStart(now: number): number {
    return (Math.floor(now / this.sliceMs) - this.slices + 1) * this.sliceMs;
  }

  /** Offset in `totals` of the slice holding `now`, cleared first when it held an older slice. */
  private slot(now: number): number {
    const n = Math.floor(now / this.sliceMs);
    const i = n % this.slices;
    const at = i * FIELDS;
    if (this.sliceStart[i] !== n * this.sliceMs) {
      this.totals.fill(0, at, at + FIELDS);
      this.sliceStart[i] = n * this.sliceMs;
    }
    return at;
  }

  /** Adds the full time from `fullFrom` to `now` to the slices it fell in; what is older than the window is dropped. */
  private addFullUntil(now: number): void {
    let from = Math.max(this.fullFrom, this.oldestStart(now));
    this.fullFrom = Math.max(this.fullFrom, now);
    while (from < now) {
      const end = Math.min(now, (Math.floor(from / this.sliceMs) + 1) * this.sliceMs);
      this.totals[this.slot(from) + FULL_MS]! += end - from;
      from = end;
    }
  }
}
