/**
 * The bulk chunk runner: one chunk of one batch, from its byte range in
 * storage to its two parts. No queue here: the bulk lane calls `runChunk`
 * with the job's data and reports the result.
 *
 * What goes where (OpenAI's Batch API: the output file holds the requests
 * that succeeded, the error file the ones that did not):
 * - output part: one `batchOutputLineSchema` line per record the backend
 *   answered, `response.status_code` 200, `error` null, in input order.
 * - error part: one line per input line that did not succeed, in input
 *   order: invalid JSON / invalid request (from parseBatchLine), a repeated
 *   custom_id (`duplicate_custom_id`, from chunk.duplicateLines), a task the
 *   backend cannot run (`unsupported_task`), and a record the backend failed
 *   (the FleetError's code, else `backend_failed`). Every error line is
 *   `{ id, custom_id, line, response: null, error }`: it satisfies
 *   `batchErrorLineSchema` (line number and reason) and, when custom_id is
 *   known, `batchOutputLineSchema` too (OpenAI's error-file line).
 * - Blank lines are numbered but produce nothing. Every other line lands in
 *   exactly one of the two parts, so `completed + failed === processedLines`.
 *
 * Idempotence (principle 2): both parts have deterministic names and are
 * written create-only, output part FIRST, error part LAST; the error part
 * therefore marks the chunk complete, and a chunk whose two parts exist is
 * `already_done` without reading its input. Both are written even when
 * empty. If the output part already exists when this run writes it (a
 * crash between the two writes, or two workers on one chunk after a stalled
 * lock), the stored output part wins and this run's error part is
 * reconciled against it, by line: lines it holds are dropped from the error
 * part, lines it lacks go to the error part (even ones that succeeded this time,
 * with `backend_failed` saying so). No custom_id is ever in both files or
 * missing from both, whatever the backend did on each attempt.
 *
 * Memory (principle 3): the parts are built in memory, which the chunk
 * bounds: at most `chunk.lines` lines (the planner's chunk size), each an
 * input line's result (a chat body is bounded by its max_tokens). Input is
 * streamed; at most one micro-batch of records is in flight.
 *
 * Speed (the per-line path is most of a bulk worker's own cost): lines come
 * a stream piece at a time and are handled without an await each, the usual
 * line shape skips the schema walk (parse-line.ts), and each result is
 * serialised at once into its part's byte buffer (part-lines.ts), so little
 * outlives a micro-batch on the JS heap. test/bench/chunk-runner.bench.ts
 * measures the runner against the same model in a bare loop.
 *
 * Work (the heartbeat's `work`, ../work-window.ts): the chunk counts as
 * running, so its worker's engine as full, from before its first input line
 * is read until its last micro-batch returns or it stops early (a yielded
 * segment's write included); each micro-batch kept adds its answered records
 * and their units.
 *
 * Yielding (preemption, drain): when `signal` aborts, the runner stops at the
 * next record boundary (a running micro-batch is abandoned: the signal
 * reaches the backend). The lines it finished, if any, are written as a
 * SEGMENT: parts of their own for the byte range `[chunk.start, end)`, `end`
 * where the first unfinished line starts (segmentPartUris:
 * `output-00000012-<start>-<end>.jsonl`), written exactly like a chunk's
 * parts (create-only, output first, reconciled against a stored output
 * part). It returns `yielded` with the segment; the bulk lane records it in
 * the batch (BatchStore.recordSegment), copies it into the job data and
 * hands the chunk back; the chunk later resumes at `end` (segments.ts), and
 * its last part is named by its range too. Once the last micro-batch is
 * done the parts are written regardless of the signal (short, bounded work).
 *
 * Why nothing is lost or done twice. The batch's segment record is the only
 * truth: finalisation merges a chunk's recorded segments in order, then its
 * last part (or, for a chunk that never yielded, its whole-chunk parts);
 * parts nobody recorded are never read. Recording is a compare-and-append
 * (a segment must start where the record ends), settling a last part a
 * compare-and-set (it must start there too), both in one Lua script with
 * the settled bit, so the record only grows, by adjacent ranges, until the
 * chunk settles, and never after. Each run reads the record before it
 * starts and resumes from its end. The crash points:
 * - after writing a segment's parts, before recording it: nothing points
 *   at them; the next run starts where the record ends and redoes those
 *   lines; the orphan parts are ignored (and deleted with the others).
 *   If that run stops at the same line, it finds the same names: the
 *   stored output part wins and the error part is reconciled with it.
 * - after recording, before job.updateData: the job data lags the record;
 *   the next run reads the record and resumes after the segment.
 * - two runs of one chunk (a stalled lock): whichever records or settles
 *   first wins; the other's append or settle no longer starts at the
 *   record's end, is refused (`conflict`), and its parts are never merged;
 *   its job goes back to the queue and resumes from the record. Two runs
 *   that stop at the same line record the same segment once.
 * - settled elsewhere (done, skipped, failed): a later segment is refused;
 *   the run's work is dropped. A skipped or failed chunk keeps its recorded
 *   segments; finalisation reports only the range after them as not run.
 * Counts: a segment's lines are added to the batch's counters when it is
 * recorded, and the last part's when the chunk settles, each once.
 */
import {
  batchOutputLineSchema,
  batchRequestId,
  segmentPartUris,
  type ChunkJob,
  type ChunkSegment,
} from '../../common/contracts/batch.ts';
import { DEFAULT_MAX_LINE_BYTES } from '../../common/batch/line-splitter.ts';
import { parseBatchLine } from '../../common/batch/parse-line.ts';
import type { TaskInput } from '../../common/contracts/tasks.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import type { ModelBackend } from '../backends/backend.ts';
import { workUnits, type WorkMeter } from '../work-window.ts';
import { readChunkLineArrays, splitLines, type ChunkLine } from './chunk-lines.ts';
import { DEFAULT_BATCH_SIZE, runBatch, type RecordResult } from './micro-batch.ts';
import { errorInfo, PartBuffer, partLines, type ErrorInfo, type PartLines } from './part-lines.ts';
import { lastPartUris } from './segments.ts';

export { batchRequestId };

export type ChunkStatus = 'done' | 'already_done' | 'yielded';

export interface ChunkResult {
  status: ChunkStatus;
  /** Lines in the output part (records the backend answered); on `yielded`, in the segment's. */
  completed: number;
  /** Lines in the error part; on `yielded`, in the segment's. */
  failed: number;
  /** Non-blank input lines handled (on `yielded`: in the segment, 0 without one). */
  processedLines: number;
  /** On `yielded` after at least one finished line: the segment written, to record in the batch. */
  segment?: ChunkSegment;
  /** On `yielded`: why the finished lines could not be kept (the segment's write failed). */
  segmentError?: unknown;
}

export interface ChunkRunnerDeps {
  storage: Pick<Storage, 'stat' | 'read' | 'writeIfAbsent'>;
  backend: ModelBackend;
  /** Preemption / drain: aborting it yields the chunk (see the module comment). */
  signal?: AbortSignal;
  /** Records per micro-batch (default 64). */
  batchSize?: number;
  /** In-flight run() calls for a backend without runMany (default 16). */
  concurrency?: number;
  /** Called after each micro-batch with the non-blank lines handled so far. */
  onProgress?: (done: number) => void;
  /** Told when the chunk starts and stops running records (the engine is full) and what each micro-batch did. */
  work?: WorkMeter;
  /** Clock for `created` in chat bodies and for `work` (ms since the epoch). */
  now?: () => number;
}

/** One handled input line: the record to run (`input`), or why it cannot run (`error`). */
interface Entry {
  line: number;
  /** Where the next input line starts. */
  next: number;
  customId: string | null;
  input: TaskInput | null;
  error: ErrorInfo | null;
}

/** For a record that succeeded: the error to report should the stored output part lack it. */
const lostError: ErrorInfo = {
  code: 'backend_failed',
  message: 'failed on an earlier attempt of this chunk, whose output part was already written',
};

/**
 * The two parts as they are built, and the input order across them: `order`
 * holds each handled line's number, positive for an output line, negative
 * for an error line (numbers start at 1, so the sign is free).
 */
class ChunkParts {
  readonly output = new PartBuffer();
  readonly errors = new PartBuffer();
  readonly order: number[] = [];
  /** Where the input line after the last one added starts, and its number (a segment's end). */
  next: number;
  nextLine: number;

  constructor(
    private readonly lines: PartLines,
    private readonly batchId: string,
    private readonly chunkIndex: number,
    range: { start: number; firstLine: number },
  ) {
    this.next = range.start;
    this.nextLine = range.firstLine;
  }

  /** Records what `entry` produced: its output line, or its error line. */
  add(entry: Entry, result: RecordResult | undefined, created: number): void {
    const { line, customId } = entry;
    this.next = entry.next;
    this.nextLine = line + 1;
    let error = entry.error;
    if (entry.input !== null) {
      if (result instanceof Error || result === undefined) {
        error = errorInfo(result ?? new Error('the backend returned no result'));
      } else {
        try {
          this.output.append(this.lines.output(line, customId!, result, created));
          this.order.push(line);
          return;
        } catch (err) {
          error = errorInfo(err);
        }
      }
    }
    this.errors.append(this.lines.error(line, customId, error!));
    this.order.push(-line);
  }

  /**
   * The error part that agrees with a stored output part holding `stored` ids:
   * lines it holds are dropped, lines it lacks are errors (a success of this
   * run among them reported as lost). Input order.
   */
  reconciled(stored: ReadonlySet<string>): PartBuffer {
    const out = new PartBuffer();
    let ok = 0;
    let failed = 0;
    for (const signed of this.order) {
      const line = Math.abs(signed);
      const text = signed > 0 ? this.output.line(ok++) : this.errors.line(failed++);
      if (stored.has(batchRequestId(this.batchId, this.chunkIndex, line))) continue;
      if (signed < 0) {
        out.append(text);
      } else {
        const { custom_id: customId } = JSON.parse(text) as { custom_id: string };
        out.append(this.lines.error(line, customId, lostError));
      }
    }
    return out;
  }
}

async function exists(storage: ChunkRunnerDeps['storage'], uri: string): Promise<boolean> {
  try {
    await storage.stat(uri);
    return true;
  } catch (err) {
    if (isStorageError(err) && err.code === 'not_found') return false;
    throw err;
  }
}

/** Non-blank lines of a stored part (bounded by a chunk), each handed to `visit`. */
async function readPart(
  storage: ChunkRunnerDeps['storage'],
  uri: string,
  signal: AbortSignal | undefined,
  visit: (text: string) => void = () => undefined,
): Promise<number> {
  const stream = await storage.read(uri, { signal });
  let n = 0;
  try {
    // Our own part lines: no length limit applies.
    for await (const { text } of splitLines(stream as AsyncIterable<Buffer>, 1, Number.POSITIVE_INFINITY)) {
      visit(text ?? '');
      n++;
    }
  } finally {
    if (!stream.destroyed) stream.destroy();
  }
  return n;
}

const contentType = 'application/jsonl';

type Uris = { outputPart: string; errorPart: string };

/**
 * Writes parts create-only, output part first, error part last (it marks them
 * complete); when the output part is there already, it wins and the error
 * part is reconciled with it. Returns the lines in each, as stored.
 */
async function writeParts(
  storage: ChunkRunnerDeps['storage'],
  uris: Uris,
  parts: ChunkParts,
): Promise<{ completed: number; failed: number }> {
  const { created } = await storage.writeIfAbsent(uris.outputPart, parts.output.toBuffer(), { contentType });
  let errorPart = parts.errors;
  let completed = parts.output.lines;
  if (!created) {
    // Another attempt's output part is final: make the error part agree with it, line by line.
    const stored = new Set<string>();
    completed = await readPart(storage, uris.outputPart, undefined, (text) => {
      stored.add(batchOutputLineSchema.parse(JSON.parse(text)).id);
    });
    errorPart = parts.reconciled(stored);
  }
  await storage.writeIfAbsent(uris.errorPart, errorPart.toBuffer(), { contentType });
  return { completed, failed: parts.order.length - completed };
}

export async function runChunk(job: ChunkJob, deps: ChunkRunnerDeps): Promise<ChunkResult> {
  const { storage, backend, onProgress, work } = deps;
  const signal = deps.signal ?? new AbortController().signal;
  const batchSize = deps.batchSize ?? DEFAULT_BATCH_SIZE;
  const now = deps.now ?? Date.now;
  const { chunk } = job;
  const last = lastPartUris(job);

  if ((await exists(storage, last.outputPart)) && (await exists(storage, last.errorPart))) {
    const completed = await readPart(storage, last.outputPart, undefined);
    const failed = await readPart(storage, last.errorPart, undefined);
    return { status: 'already_done', completed, failed, processedLines: completed + failed };
  }

  const duplicates = new Set(chunk.duplicateLines);
  const batch = { endpoint: job.endpoint, model: job.model };
  const entryOf = ({ line, text, next }: ChunkLine): Entry => {
    if (text === null) {
      const message = `line is longer than ${DEFAULT_MAX_LINE_BYTES} bytes`;
      return { line, next, customId: null, input: null, error: { code: 'invalid_request', message } };
    }
    const parsed = parseBatchLine(text, batch);
    const { customId } = parsed;
    if (duplicates.has(line)) {
      const message = `custom_id ${JSON.stringify(customId)} was already used by an earlier line of this batch`;
      return { line, next, customId, input: null, error: { code: 'duplicate_custom_id', message } };
    }
    if (!parsed.ok) {
      return { line, next, customId, input: null, error: { code: parsed.code, message: parsed.message } };
    }
    if (!backend.tasks.has(parsed.input.task)) {
      const message = `the ${backend.kind} backend of model ${job.model} cannot run task ${parsed.input.task}`;
      return { line, next, customId, input: null, error: { code: 'unsupported_task', message } };
    }
    return { line, next, customId, input: parsed.input, error: null };
  };

  const parts = new ChunkParts(partLines(job), job.batchId, job.chunk.index, chunk);
  /** Stops here: the finished lines, if any, become a segment. */
  const yielded = async (): Promise<ChunkResult> => {
    const none: ChunkResult = { status: 'yielded', completed: 0, failed: 0, processedLines: 0 };
    if (parts.order.length === 0) return none;
    const segment = { start: chunk.start, end: parts.next, nextLine: parts.nextLine, lines: parts.order.length };
    try {
      // Written whatever the signal says: short, bounded work, like the end of a finished chunk.
      const counts = await writeParts(storage, segmentPartUris(job, segment.start, segment.end), parts);
      return { ...none, ...counts, processedLines: segment.lines, segment: { ...segment, ...counts } };
    } catch (err) {
      // Nothing recorded, so nothing is lost: the lines run again from the chunk's start.
      return { ...none, segmentError: err };
    }
  };
  /** Runs one micro-batch of entries into the parts; false when the signal stopped it. */
  const runGroup = async (group: readonly Entry[]): Promise<boolean> => {
    if (signal.aborted) return false;
    const inputs: TaskInput[] = [];
    for (const entry of group) if (entry.input !== null) inputs.push(entry.input);
    const results = await runBatch(backend, inputs, { signal, concurrency: deps.concurrency });
    if (signal.aborted) return false;
    const at = now();
    if (work) {
      let answered = 0;
      let units = 0;
      for (const r of results) {
        if (r instanceof Error) continue;
        answered++;
        units += workUnits(r);
      }
      work.bulk(answered, units, at);
    }
    const created = Math.floor(at / 1000);
    let k = 0;
    for (const entry of group) parts.add(entry, entry.input === null ? undefined : results[k++], created);
    onProgress?.(parts.order.length);
    return true;
  };

  if (signal.aborted) return yielded();
  work?.chunkStarted(now());
  try {
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`batch size must be an integer >= 1: ${batchSize}`);
    }
    // Lines arrive a stream piece at a time and are handled without an await each:
    // the only awaits on the hot path are one per piece read and one per micro-batch.
    let group: Entry[] = [];
    for await (const lines of readChunkLineArrays(storage, chunk, signal)) {
      for (const line of lines) {
        group.push(entryOf(line));
        if (group.length < batchSize) continue;
        if (!(await runGroup(group))) return await yielded();
        group = [];
      }
    }
    if (group.length > 0 && !(await runGroup(group))) return await yielded();
  } catch (err) {
    if (signal.aborted) return yielded();
    throw err;
  } finally {
    work?.chunkStopped(now());
  }

  // Past this point the chunk finishes even if the signal aborts: the writes are short and bounded.
  const { completed, failed } = await writeParts(storage, last, parts);
  return { status: 'done', completed, failed, processedLines: parts.order.length };
}
