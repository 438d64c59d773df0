/**
 * Replays a trace slice as open-loop real-time load: request i is sent at
 * arrivalMs / F of wall time after the start, whatever happened to the ones
 * before (the trace's arrivals do not wait for answers). Each call resolves
 * with its enqueue-to-first-token time in wall ms; the replay converts to
 * model ms (× F) and waits for answers until a deadline. A request still
 * unanswered then is reported with the time it had waited so far (a lower
 * bound on its TTFT) and flagged.
 */
import type { TraceRequest } from './colocate-trace.ts';

export interface ReplayOutcome {
  /** Per request, in trace order: TTFT in model ms (a lower bound where `unfinished`). */
  ttftMs: Float64Array;
  unfinished: Uint8Array;
  errors: number;
  firstError: string | undefined;
  /** Wall clock (performance.now) of the first and last send. */
  startedAt: number;
  lastSentAt: number;
}

export type SendRealtime = (req: TraceRequest, index: number) => Promise<number>;

export async function replay(
  slice: readonly TraceRequest[],
  factor: number,
  send: SendRealtime,
  /** Wall ms to wait for answers after the last send. */
  drainMs: number,
): Promise<ReplayOutcome> {
  const ttftMs = new Float64Array(slice.length).fill(Number.NaN);
  const unfinished = new Uint8Array(slice.length);
  const sentAt = new Float64Array(slice.length);
  let errors = 0;
  let firstError: string | undefined;
  const startedAt = performance.now();
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < slice.length; i++) {
    const due = startedAt + slice[i]!.arrivalMs / factor;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    sentAt[i] = performance.now();
    pending.push(
      send(slice[i]!, i).then(
        (wallMs) => {
          ttftMs[i] = wallMs * factor;
        },
        (err: unknown) => {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        },
      ),
    );
  }
  const lastSentAt = performance.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(pending),
    new Promise((r) => {
      timer = setTimeout(r, drainMs);
    }),
  ]);
  clearTimeout(timer);
  const endAt = performance.now();
  for (let i = 0; i < slice.length; i++) {
    if (!Number.isNaN(ttftMs[i]!)) continue;
    unfinished[i] = 1;
    ttftMs[i] = (endAt - sentAt[i]!) * factor;
  }
  return { ttftMs, unfinished, errors, firstError, startedAt, lastSentAt };
}
