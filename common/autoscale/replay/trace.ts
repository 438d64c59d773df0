/**
 * Real-time traces for the autoscaling replay (`interfleet autoscale
 * simulate --trace`), one request per CSV row, in either of two forms:
 *
 * - the Azure LLM inference trace 2023 (conversation or code):
 *   `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps like
 *   `2023-11-16 18:15:46.6805900` (read as UTC);
 * - a generic form, `seconds,promptTokens,outputTokens`: seconds from any
 *   origin (fractions allowed), for traces of one's own.
 *
 * Rows need not be sorted (arrivals are sorted here); every malformed row is
 * reported with its line number, all at once, as config errors are. The
 * trace is parsed once at the edge; the replay reads only TraceRequest.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export interface TraceRequest {
  /** Model ms from the first arrival. */
  arrivalMs: number;
  promptTokens: number;
  outputTokens: number;
}

export interface Trace {
  /** Epoch ms of the first arrival (Azure timestamps); 0 for the generic form. */
  startAt: number;
  requests: TraceRequest[];
}

export class TraceError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid trace:\n  - ${issues.join('\n  - ')}`);
    this.name = 'TraceError';
  }
}

const AZURE_HEADER = 'TIMESTAMP,ContextTokens,GeneratedTokens';
const GENERIC_HEADER = 'seconds,promptTokens,outputTokens';
/** More problems than this and the rest are counted, not listed. */
const MAX_LISTED = 20;

const tokens = z.number({ error: 'expected a number' }).int('expected a whole number').min(1, 'expected at least 1');
const rowSchema = z.object({
  at: z.number({ error: 'expected a time' }).finite('expected a time'),
  promptTokens: tokens,
  outputTokens: tokens,
});

/** `2023-11-16 18:15:46.6805900` → epoch ms (UTC); NaN when malformed. */
export function parseAzureTimestamp(text: string): number {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)?$/.exec(text.trim());
  if (!m) return Number.NaN;
  const fraction = m[3] === undefined ? 0 : Number(m[3]) * 1000;
  return Date.parse(`${m[1]}T${m[2]}Z`) + fraction;
}

const cellNumber = (cell: string | undefined): number =>
  cell === undefined || cell.trim() === '' ? Number.NaN : Number(cell);

/** Parses a trace's text; `source` names it in errors. Throws TraceError with every problem. */
export function parseTrace(text: string, source = 'trace'): Trace {
  const lines = text.split(/\r?\n/);
  const header = lines[0]?.replace(/^\uFEFF/, '').trim();
  const azure = header === AZURE_HEADER;
  if (!azure && header !== GENERIC_HEADER) {
    throw new TraceError([
      `${source}:1: unexpected header ${JSON.stringify(lines[0] ?? '')}; expected "${AZURE_HEADER}" or "${GENERIC_HEADER}"`,
    ]);
  }
  const issues: string[] = [];
  let problems = 0;
  const rows: Array<z.infer<typeof rowSchema>> = [];
  lines.forEach((line, i) => {
    if (i === 0 || line.trim() === '') return;
    const cells = line.split(',');
    const found =
      cells.length === 3
        ? rowSchema.safeParse({
            at: azure ? parseAzureTimestamp(cells[0]!) : cellNumber(cells[0]) * 1000,
            promptTokens: cellNumber(cells[1]),
            outputTokens: cellNumber(cells[2]),
          })
        : undefined;
    if (found?.success) {
      rows.push(found.data);
      return;
    }
    problems++;
    if (issues.length >= MAX_LISTED) return;
    const why =
      found === undefined
        ? `expected 3 fields, found ${cells.length}`
        : found.error.issues.map((e) => `${e.path.join('.')}: ${e.message}`).join('; ');
    issues.push(`${source}:${i + 1}: ${why} (${JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line)})`);
  });
  if (problems > issues.length) issues.push(`… and ${problems - issues.length} more malformed rows`);
  if (issues.length > 0) throw new TraceError(issues);
  if (rows.length === 0) throw new TraceError([`${source}: no requests after the header`]);
  rows.sort((a, b) => a.at - b.at);
  const t0 = rows[0]!.at;
  return {
    startAt: azure ? t0 : 0,
    requests: rows.map((r) => ({ arrivalMs: r.at - t0, promptTokens: r.promptTokens, outputTokens: r.outputTokens })),
  };
}

/** Reads and parses a trace file. */
export function loadTrace(file: string): Trace {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TraceError([`${file}: cannot read: ${(err as Error).message}`]);
  }
  return parseTrace(text, file);
}

/** mulberry32: a small seeded generator, so that a shaped trace is the same every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export interface TraceShape {
  /** Time compression: arrivals at t / compress (rates × compress, duration ÷ compress). Default 1. */
  compress?: number;
  /**
   * Load scaling: each request stands for `scale` requests on average (⌊scale⌋ copies, one more with
   * the fractional part's probability), each copy moved by a uniform jitter of ±jitterMs so that
   * copies arrive independently (as more users would) while the minute-scale shape stays. Default 1.
   */
  scale?: number;
  /** Jitter of the copies (default 30 s). */
  jitterMs?: number;
  seed?: number;
}

/** The trace's requests, time-compressed and load-scaled (deterministic for a seed), in arrival order. */
export function shapeTrace(requests: readonly TraceRequest[], shape: TraceShape = {}): TraceRequest[] {
  const compress = shape.compress ?? 1;
  const scale = shape.scale ?? 1;
  if (!(compress > 0) || !(scale > 0)) throw new Error('compress and scale must be above 0');
  const next = seededRandom(shape.seed ?? 1);
  const out: TraceRequest[] = [];
  const whole = Math.floor(scale);
  const fraction = scale - whole;
  const jitter = shape.jitterMs ?? 30_000;
  for (const r of requests) {
    const at = r.arrivalMs / compress;
    const copies = whole + (next() < fraction ? 1 : 0);
    // Copies are reflected at 0, so that the first seconds keep their density (no pile-up at t = 0).
    for (let k = 0; k < copies; k++)
      out.push({ ...r, arrivalMs: k === 0 ? at : Math.abs(at + (2 * next() - 1) * jitter) });
  }
  return out.sort((a, b) => a.arrivalMs - b.arrivalMs);
}
