/**
 * The Azure LLM inference trace (2023, conversation): one request per CSV row,
 * `TIMESTAMP,ContextTokens,GeneratedTokens`, rows in time order (19,366 over
 * an hour). A slice of it becomes the real-time load of bench:colocate. The
 * parsing is the replay's (common/autoscale/replay/trace.ts).
 */
import { loadTrace as loadReplayTrace, type TraceRequest } from '../../common/autoscale/replay/trace.ts';

export type { TraceRequest };

/** Every row, with arrival times relative to the first (ms). Throws on a malformed row (every one listed). */
export function loadTrace(file: string): TraceRequest[] {
  return loadReplayTrace(file).requests;
}

/** Requests arriving in [startMin, startMin + minutes), re-based to the slice's start. */
export function sliceTrace(trace: readonly TraceRequest[], startMin: number, minutes: number): TraceRequest[] {
  const from = startMin * 60_000;
  const to = from + minutes * 60_000;
  return trace
    .filter((r) => r.arrivalMs >= from && r.arrivalMs < to)
    .map((r) => ({ ...r, arrivalMs: r.arrivalMs - from }));
}
