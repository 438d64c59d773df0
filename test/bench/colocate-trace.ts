/**
 * The Azure LLM inference trace (2023, conversation): one request per CSV row,
 * `TIMESTAMP,ContextTokens,GeneratedTokens`, rows in time order (19,366 over
 * an hour). A slice of it becomes the real-time load of bench:colocate.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export interface TraceRequest {
  /** Model ms from the start of the slice. */
  arrivalMs: number;
  promptTokens: number;
  outputTokens: number;
}

const rowSchema = z.object({
  at: z.number().finite(),
  promptTokens: z.number().int().min(1),
  outputTokens: z.number().int().min(1),
});

/** `2023-11-16 18:15:46.6805900` → epoch ms (read as UTC; only differences matter). */
function parseTimestamp(text: string): number {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)?$/.exec(text.trim());
  if (!m) return Number.NaN;
  const fraction = m[3] === undefined ? 0 : Number(m[3]) * 1000;
  return Date.parse(`${m[1]}T${m[2]}Z`) + fraction;
}

/** Every row, with arrival times relative to the first (ms). Throws on a malformed row. */
export function loadTrace(file: string): TraceRequest[] {
  const lines = readFileSync(file, 'utf8').split(/\r?\n/);
  if (lines[0]?.trim() !== 'TIMESTAMP,ContextTokens,GeneratedTokens') {
    throw new Error(`${file}: unexpected header ${JSON.stringify(lines[0])}`);
  }
  const rows = lines
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((line, i) => {
      const [ts, ctx, gen] = line.split(',');
      const parsed = rowSchema.safeParse({
        at: parseTimestamp(ts ?? ''),
        promptTokens: Number(ctx),
        outputTokens: Number(gen),
      });
      if (!parsed.success) throw new Error(`${file}: row ${i + 2} is malformed: ${line}`);
      return parsed.data;
    });
  const t0 = rows[0]?.at ?? 0;
  return rows.map((r) => ({ arrivalMs: r.at - t0, promptTokens: r.promptTokens, outputTokens: r.outputTokens }));
}

/** Requests arriving in [startMin, startMin + minutes), re-based to the slice's start. */
export function sliceTrace(trace: readonly TraceRequest[], startMin: number, minutes: number): TraceRequest[] {
  const from = startMin * 60_000;
  const to = from + minutes * 60_000;
  return trace
    .filter((r) => r.arrivalMs >= from && r.arrivalMs < to)
    .map((r) => ({ ...r, arrivalMs: r.arrivalMs - from }));
}
