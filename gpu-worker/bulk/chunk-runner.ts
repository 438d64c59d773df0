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
 * Preemption: when `signal` aborts, the runner stops at the next record
 * boundary (a running micro-batch is abandoned: the signal reaches the
 * backend), writes nothing and returns `yielded`; the chunk is simply run
 * again from its start later. Once the last micro-batch is done the parts
 * are written regardless of the signal (short, bounded work), so a run either
 * writes nothing or completes.
 */
import { batchOutputLineSchema, type BatchEndpoint, type ChunkJob } from '../../common/contracts/batch.ts';
import { DEFAULT_MAX_LINE_BYTES } from '../../common/batch/line-splitter.ts';
import { parseBatchLine } from '../../common/batch/parse-line.ts';
import type { TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import { FleetError } from '../../common/errors.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import type { ModelBackend } from '../backends/backend.ts';
import { readChunkLines, splitLines } from './chunk-lines.ts';
import { DEFAULT_BATCH_SIZE, groupBatches, runBatch, type RecordResult } from './micro-batch.ts';

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

interface ErrorInfo {
  code: string;
  message: string;
}

/** One handled input line: the record to run, or why it cannot run. */
type Entry =
  { line: number; customId: string; input: TaskInput } | { line: number; customId: string | null; error: ErrorInfo };

/** What one line produced: an output line or an error line (serialised JSON, no newline). */
interface Outcome {
  line: number;
  customId: string | null;
  ok: boolean;
  json: string;
  /** For a record that succeeded: the error to report should the stored output part lack it. */
  errorIfLost?: ErrorInfo;
}

/** Deterministic ids: a re-run produces the same ones. */
export const batchRequestId = (batchId: string, line: number): string => `batch_req_${batchId}_${line}`;
const requestId = (batchId: string, line: number): string => `req_${batchId}_${line}`;

function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof FleetError) return { code: err.code, message: err.message };
  return { code: 'backend_failed', message: err instanceof Error ? err.message : String(err) };
}

function errorJson(batchId: string, line: number, customId: string | null, error: ErrorInfo): string {
  return JSON.stringify({ id: batchRequestId(batchId, line), custom_id: customId, line, response: null, error });
}

/** The response body, shaped like the matching real-time API's answer. */
function responseBody(endpoint: BatchEndpoint, job: ChunkJob, line: number, output: TaskOutput, created: number) {
  if (endpoint === '/v1/infer') return { id: requestId(job.batchId, line), model: job.model, output };
  if (output.task !== 'chat') throw new FleetError('internal', `a chat completion got a ${output.task} output`);
  const { promptTokens, completionTokens } = output.usage;
  return {
    id: `chatcmpl-${job.batchId}-${line}`,
    object: 'chat.completion',
    created,
    model: job.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: output.text },
        finish_reason: output.finishReason,
        logprobs: null,
      },
    ],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}

function outcomeOf(job: ChunkJob, entry: Entry, result: RecordResult | undefined, created: number): Outcome {
  const { batchId } = job;
  if ('error' in entry) {
    return {
      line: entry.line,
      customId: entry.customId,
      ok: false,
      json: errorJson(batchId, entry.line, entry.customId, entry.error),
    };
  }
  let error: ErrorInfo;
  if (result instanceof Error || result === undefined) {
    error = errorInfo(result ?? new Error('the backend returned no result'));
  } else {
    try {
      const body = responseBody(job.endpoint, job, entry.line, result, created);
      const json = JSON.stringify({
        id: batchRequestId(batchId, entry.line),
        custom_id: entry.customId,
        response: { status_code: 200, request_id: requestId(batchId, entry.line), body },
        error: null,
      });
      const errorIfLost = {
        code: 'backend_failed',
        message: 'failed on an earlier attempt of this chunk, whose output part was already written',
      };
      return { line: entry.line, customId: entry.customId, ok: true, json, errorIfLost };
    } catch (err) {
      error = errorInfo(err);
    }
  }
  return {
    line: entry.line,
    customId: entry.customId,
    ok: false,
    json: errorJson(batchId, entry.line, entry.customId, error),
  };
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
const jsonl = (lines: readonly string[]): Buffer =>
  Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8');

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
  async function* entries(): AsyncGenerator<Entry> {
    for await (const { line, text } of readChunkLines(storage, chunk, signal)) {
      if (text === null) {
        const message = `line is longer than ${DEFAULT_MAX_LINE_BYTES} bytes`;
        yield { line, customId: null, error: { code: 'invalid_request', message } };
        continue;
      }
      if (duplicates.has(line)) {
        const parsed = parseBatchLine(text, batch);
        const customId = parsed.customId;
        const message = `custom_id ${JSON.stringify(customId)} was already used by an earlier line of this batch`;
        yield { line, customId, error: { code: 'duplicate_custom_id', message } };
        continue;
      }
      const parsed = parseBatchLine(text, batch);
      if (!parsed.ok) {
        yield { line, customId: parsed.customId, error: { code: parsed.code, message: parsed.message } };
      } else if (!backend.tasks.has(parsed.input.task)) {
        const message = `the ${backend.kind} backend of model ${job.model} cannot run task ${parsed.input.task}`;
        yield { line, customId: parsed.customId, error: { code: 'unsupported_task', message } };
      } else {
        yield { line, customId: parsed.customId, input: parsed.input };
      }
    }
  }

  const outcomes: Outcome[] = [];
  const yielded = (): ChunkResult => ({
    status: 'yielded',
    completed: outcomes.filter((o) => o.ok).length,
    failed: outcomes.filter((o) => !o.ok).length,
    processedLines: outcomes.length,
  });
  if (signal.aborted) return yielded();
  try {
    for await (const group of groupBatches(entries(), batchSize)) {
      if (signal.aborted) return yielded();
      const runnable = group.filter((e): e is Extract<Entry, { input: TaskInput }> => 'input' in e);
      const results = await runBatch(
        backend,
        runnable.map((e) => e.input),
        { signal, concurrency: deps.concurrency },
      );
      if (signal.aborted) return yielded();
      const byEntry = new Map<Entry, RecordResult>(runnable.map((e, i) => [e, results[i]!]));
      const created = Math.floor(now() / 1000);
      for (const entry of group) outcomes.push(outcomeOf(job, entry, byEntry.get(entry), created));
      onProgress?.(outcomes.length);
    }
  } catch (err) {
    if (signal.aborted) return yielded();
    throw err;
  }

  // Output part first; the error part, written last, marks the chunk complete. Past this
  // point the chunk finishes even if the signal aborts: the writes are short and bounded.
  const outputLines = outcomes.filter((o) => o.ok).map((o) => o.json);
  const { created } = await storage.writeIfAbsent(job.outputPart, jsonl(outputLines), { contentType });
  let errorLines = outcomes.filter((o) => !o.ok).map((o) => o.json);
  let completed = outputLines.length;
  if (!created) {
    // Another attempt's output part is final: make the error part agree with it, line by line.
    const stored = new Set<string>();
    completed = await readPart(storage, job.outputPart, undefined, (text) => {
      stored.add(batchOutputLineSchema.parse(JSON.parse(text)).id);
    });
    errorLines = outcomes
      .filter((o) => !stored.has(batchRequestId(job.batchId, o.line)))
      .map((o) => (o.ok ? errorJson(job.batchId, o.line, o.customId, o.errorIfLost!) : o.json));
  }
  await storage.writeIfAbsent(job.errorPart, jsonl(errorLines), { contentType });
  return { status: 'done', completed, failed: outcomes.length - completed, processedLines: outcomes.length };
}
