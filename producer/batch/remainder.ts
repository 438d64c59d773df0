/**
 * Remainder parts: the error lines of a chunk whose lines never ran (the batch
 * was cancelled or expired before it ran, or it failed for good). Principle 7
 * says nothing is lost silently, so finalisation gives every non-blank input
 * line of such a chunk one error line, in the error file at the chunk's place:
 *
 *   {"id":"batch_req_<batch>_<chunk>_<line>","custom_id":…,"line":…,"input":…,"response":null,"error":{code,message}}
 *
 * the shape of the bulk worker's error lines (gpu-worker/bulk/chunk-runner.ts),
 * so readers of errors.jsonl see one format. The part is written create-only
 * under a deterministic name, and its bytes depend only on the input range and
 * the reason, so a finalisation re-run finds it, or writes the same bytes.
 * A chunk that yielded segments before it stopped (chunk preemption) keeps
 * them; its remainder covers only the range after them (unfinishedRange).
 */
import { Readable } from 'node:stream';
import { splitLines } from '../../common/batch/line-splitter.ts';
import { parseBatchLine } from '../../common/batch/parse-line.ts';
import { batchErrorLineJson, type BatchEndpoint, type Chunk, type ChunkSegment } from '../../common/contracts/batch.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';

export type NotRunCode = 'batch_cancelled' | 'batch_expired' | 'chunk_failed';

export interface NotRunReason {
  code: NotRunCode;
  message: string;
}

/**
 * `parts/remainder-00000012.jsonl`: beside the chunk's own parts (partUris),
 * never clashing with them. For the rest of a chunk that yielded segments
 * (only `range` of it never ran) the range is in the name too:
 * `parts/remainder-00000012-<start>-<end>.jsonl`.
 */
export function remainderPartUri(partsPrefix: string, index: number, range?: { start: number; end: number }): string {
  const base = partsPrefix.endsWith('/') ? partsPrefix : `${partsPrefix}/`;
  const suffix = range === undefined ? '' : `-${range.start}-${range.end}`;
  return `${base}remainder-${String(index).padStart(8, '0')}${suffix}.jsonl`;
}

/**
 * What of a planned chunk never ran, given its recorded segments (in order):
 * the range after the last one, its first line and its non-blank lines.
 */
export function unfinishedRange(chunk: Chunk, segments: readonly ChunkSegment[]): Chunk {
  const last = segments[segments.length - 1];
  if (last === undefined) return chunk;
  const done = segments.reduce((n, s) => n + s.lines, 0);
  return { ...chunk, start: last.end, firstLine: last.nextLine, lines: Math.max(0, chunk.lines - done) };
}

/**
 * Why a chunk without parts never ran. A recorded failure wins over the stop
 * reason (it is the more precise story); a chunk with neither is a bookkeeping
 * gap, still reported rather than dropped.
 */
export function notRunReason(
  index: number,
  failure: string | undefined,
  stop: 'cancelled' | 'expired' | null,
): NotRunReason {
  if (failure !== undefined) return { code: 'chunk_failed', message: `chunk ${index} failed: ${failure}` };
  if (stop === 'cancelled')
    return { code: 'batch_cancelled', message: 'the batch was cancelled before this request ran' };
  if (stop === 'expired') return { code: 'batch_expired', message: 'the batch expired before this request ran' };
  return { code: 'chunk_failed', message: `chunk ${index} ended without output and without a recorded reason` };
}

export interface RemainderInput {
  batchId: string;
  endpoint: BatchEndpoint;
  model: string;
  chunk: Chunk;
  reason: NotRunReason;
}

/** The error lines of a chunk's range, one per non-blank line (the planner's and worker's splitter). */
async function* remainderLines(
  storage: Pick<Storage, 'read'>,
  input: RemainderInput,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  const { chunk, batchId, reason } = input;
  if (chunk.end <= chunk.start) return;
  const stream = await storage.read(chunk.input, { start: chunk.start, end: chunk.end, signal });
  const batch = { endpoint: input.endpoint, model: input.model };
  const error = { code: reason.code, message: reason.message };
  let lines: string[] = [];
  try {
    for await (const line of splitLines(stream as AsyncIterable<Buffer>, { firstLine: chunk.firstLine })) {
      const customId = line.kind === 'line' ? parseBatchLine(line.text, batch).customId : null;
      lines.push(batchErrorLineJson(batchId, chunk, line.line, customId, error));
      if (lines.length >= 256) {
        yield Buffer.from(`${lines.join('\n')}\n`);
        lines = [];
      }
    }
    if (lines.length > 0) yield Buffer.from(`${lines.join('\n')}\n`);
  } finally {
    if (!stream.destroyed) stream.destroy();
  }
}

/**
 * Writes a chunk's remainder part unless it is there already (a re-run). Its
 * line count is `chunk.lines`: the planner counted the same non-blank lines.
 */
export async function writeRemainderPart(
  storage: Pick<Storage, 'stat' | 'read' | 'writeIfAbsent'>,
  uri: string,
  input: RemainderInput,
  signal?: AbortSignal,
): Promise<{ created: boolean }> {
  try {
    await storage.stat(uri, { signal });
    return { created: false }; // stat first: no need to read the input again
  } catch (err) {
    if (!isStorageError(err, 'not_found')) throw err;
  }
  const body = Readable.from(remainderLines(storage, input, signal));
  return storage.writeIfAbsent(uri, body, { contentType: 'application/jsonl', signal });
}
