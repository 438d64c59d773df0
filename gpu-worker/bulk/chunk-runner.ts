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
 * Preemption: when `signal` aborts, the runner stops at the next record
 * boundary (a running micro-batch is abandoned: the signal reaches the
 * backend), writes nothing and returns `yielded`; the chunk is simply run
 * again from its start later. Once the last micro-batch is done the parts
 * are written regardless of the signal (short, bounded work), so a run either
 * writes nothing or completes.
 */
import { batchOutputLineSchema, batchRequestId, type ChunkJob } from '../../common/contracts/batch.ts';
import { DEFAULT_MAX_LINE_BYTES } from '../../common/batch/line-splitter.ts';
import { parseBatchLine } from '../../common/batch/parse-line.ts';
import type { TaskInput } from '../../common/contracts/tasks.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import type { ModelBackend } from '../backends/backend.ts';
import { readChunkLineArrays, splitLines, type ChunkLine } from './chunk-lines.ts';
import { DEFAULT_BATCH_SIZE, runBatch, type RecordResult } from './micro-batch.ts';
import { errorInfo, PartBuffer, partLines, type ErrorInfo, type PartLines } from './part-lines.ts';

export { batchRequestId };

export type ChunkStatus = 'done' | 'already_done' | 'yielded';

export interface ChunkResult {
  status: ChunkStatus;
  /** Lines in the output part (records the backend answered). */
  completed: number;
  /** Lines in the error part. */
  failed: number;
  /** Non-blank input lines handled (on `yielded`: before stopping; nothing was written). */
  processedLines: number;
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
  /** Clock for `created` in chat bodies (ms since the epoch). */
  now?: () => number;
}

/** One handled input line: the record to run (`input`), or why it cannot run (`error`). */
interface Entry {
  line: number;
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

  constructor(
    private readonly lines: PartLines,
    private readonly batchId: string,
    private readonly chunkIndex: number,
  ) {}

  /** Records what `entry` produced: its output line, or its error line. */
  add(entry: Entry, result: RecordResult | undefined, created: number): void {
    const { line, customId } = entry;
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

export async function runChunk(job: ChunkJob, deps: ChunkRunnerDeps): Promise<ChunkResult> {
  const { storage, backend, onProgress } = deps;
  const signal = deps.signal ?? new AbortController().signal;
  const batchSize = deps.batchSize ?? DEFAULT_BATCH_SIZE;
  const now = deps.now ?? Date.now;
  const { chunk } = job;

  if ((await exists(storage, job.outputPart)) && (await exists(storage, job.errorPart))) {
    const completed = await readPart(storage, job.outputPart, undefined);
    const failed = await readPart(storage, job.errorPart, undefined);
    return { status: 'already_done', completed, failed, processedLines: completed + failed };
  }

  const duplicates = new Set(chunk.duplicateLines);
  const batch = { endpoint: job.endpoint, model: job.model };
  const entryOf = ({ line, text }: ChunkLine): Entry => {
    if (text === null) {
      const message = `line is longer than ${DEFAULT_MAX_LINE_BYTES} bytes`;
      return { line, customId: null, input: null, error: { code: 'invalid_request', message } };
    }
    const parsed = parseBatchLine(text, batch);
    const { customId } = parsed;
    if (duplicates.has(line)) {
      const message = `custom_id ${JSON.stringify(customId)} was already used by an earlier line of this batch`;
      return { line, customId, input: null, error: { code: 'duplicate_custom_id', message } };
    }
    if (!parsed.ok) return { line, customId, input: null, error: { code: parsed.code, message: parsed.message } };
    if (!backend.tasks.has(parsed.input.task)) {
      const message = `the ${backend.kind} backend of model ${job.model} cannot run task ${parsed.input.task}`;
      return { line, customId, input: null, error: { code: 'unsupported_task', message } };
    }
    return { line, customId, input: parsed.input, error: null };
  };

  const parts = new ChunkParts(partLines(job), job.batchId, job.chunk.index);
  const yielded = (): ChunkResult => ({
    status: 'yielded',
    completed: parts.output.lines,
    failed: parts.errors.lines,
    processedLines: parts.order.length,
  });
  /** Runs one micro-batch of entries into the parts; false when the signal stopped it. */
  const runGroup = async (group: readonly Entry[]): Promise<boolean> => {
    if (signal.aborted) return false;
    const inputs: TaskInput[] = [];
    for (const entry of group) if (entry.input !== null) inputs.push(entry.input);
    const results = await runBatch(backend, inputs, { signal, concurrency: deps.concurrency });
    if (signal.aborted) return false;
    const created = Math.floor(now() / 1000);
    let k = 0;
    for (const entry of group) parts.add(entry, entry.input === null ? undefined : results[k++], created);
    onProgress?.(parts.order.length);
    return true;
  };

  if (signal.aborted) return yielded();
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
        if (!(await runGroup(group))) return yielded();
        group = [];
      }
    }
    if (group.length > 0 && !(await runGroup(group))) return yielded();
  } catch (err) {
    if (signal.aborted) return yielded();
    throw err;
  }

  // Output part first; the error part, written last, marks the chunk complete. Past this
  // point the chunk finishes even if the signal aborts: the writes are short and bounded.
  const { created } = await storage.writeIfAbsent(job.outputPart, parts.output.toBuffer(), { contentType });
  let errorPart = parts.errors;
  let completed = parts.output.lines;
  if (!created) {
    // Another attempt's output part is final: make the error part agree with it, line by line.
    const stored = new Set<string>();
    completed = await readPart(storage, job.outputPart, undefined, (text) => {
      stored.add(batchOutputLineSchema.parse(JSON.parse(text)).id);
    });
    errorPart = parts.reconciled(stored);
  }
  await storage.writeIfAbsent(job.errorPart, errorPart.toBuffer(), { contentType });
  const processedLines = parts.order.length;
  return { status: 'done', completed, failed: processedLines - completed, processedLines };
}
