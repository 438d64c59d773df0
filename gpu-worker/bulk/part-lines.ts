/**
 * The lines of a chunk's two parts, serialised (JSON, no newline): an output
 * line per record the backend answered, an error line per input line that
 * did not succeed. The formats are those of chunk-runner.ts's module comment.
 *
 * Speed: every line of a batch passes through `output`, so a `/v1/infer`
 * output line is assembled from pre-serialised pieces (the batch id and
 * model are escaped once per chunk) around one JSON.stringify of the task
 * output. The bytes are exactly those of JSON.stringify over the whole line
 * object (same keys, same order): part-lines.test.ts holds them to it.
 *
 * Memory: a part is built in a PartBuffer, its lines' bytes appended to one
 * growing Buffer outside the JS heap. A chunk keeps up to `batch.chunkLines` lines
 * until it writes its parts; kept as strings they would outlive the young
 * generation and make the garbage collector copy and mark them all.
 */
import { batchErrorLineJson, batchRecordStem, type BatchEndpoint, type Chunk } from '../../common/contracts/batch.ts';
import { chatCompletionBody } from '../../common/contracts/api.ts';
import type { TaskOutput } from '../../common/contracts/tasks.ts';
import { FleetError } from '../../common/errors.ts';

export interface ErrorInfo {
  code: string;
  message: string;
}

const requestId = (stem: string, line: number): string => `req_${stem}_${line}`;

export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof FleetError) return { code: err.code, message: err.message };
  return { code: 'backend_failed', message: err instanceof Error ? err.message : String(err) };
}

/** A string's JSON form without its quotes, to splice into a longer JSON string. */
const escaped = (s: string): string => JSON.stringify(s).slice(1, -1);

export interface PartLineJob {
  batchId: string;
  /** The chunk's index and input object: with a line number they name an input line across the batch's objects. */
  chunk: Pick<Chunk, 'index' | 'input'>;
  endpoint: BatchEndpoint;
  model: string;
}

export interface PartLines {
  /** The output line of a record the backend answered; throws when that output cannot be its endpoint's body. */
  output(line: number, customId: string, output: TaskOutput, created: number): string;
  /** The error line of an input line that did not succeed. */
  error(line: number, customId: string | null, error: ErrorInfo): string;
}

export function partLines(job: PartLineJob): PartLines {
  const { batchId, chunk, endpoint, model } = job;
  const stem = batchRecordStem(batchId, chunk.index);
  const id = escaped(stem);
  const modelJson = JSON.stringify(model);

  /** The response body, shaped like the matching real-time API's answer. */
  const bodyJson = (line: number, output: TaskOutput, created: number): string => {
    if (endpoint === '/v1/infer') {
      const outputJson = JSON.stringify(output) as string | undefined;
      // Not JSON at all (a broken backend): let JSON.stringify drop the key as it would in place.
      if (outputJson === undefined) return JSON.stringify({ id: requestId(stem, line), model, output });
      return `{"id":"req_${id}_${line}","model":${modelJson},"output":${outputJson}}`;
    }
    if (output.task !== 'chat') throw new FleetError('internal', `a chat completion got a ${output.task} output`);
    return JSON.stringify(chatCompletionBody(`chatcmpl-${stem}-${line}`, created, model, output));
  };

  return {
    output: (line, customId, output, created) =>
      `{"id":"batch_req_${id}_${line}","custom_id":${JSON.stringify(customId)},` +
      `"response":{"status_code":200,"request_id":"req_${id}_${line}","body":${bodyJson(line, output, created)}},` +
      `"error":null}`,
    error: (line, customId, error) => batchErrorLineJson(batchId, chunk, line, customId, error),
  };
}

/** UTF-8 takes at most 3 bytes per UTF-16 code unit. */
const MAX_UTF8_PER_UNIT = 3;

/** A part's JSONL bytes as they are built (see the module comment): each line ends with LF. */
export class PartBuffer {
  private bytes = Buffer.allocUnsafe(64 * 1024);
  private size = 0;
  /** Byte offset where each line starts. */
  private readonly starts: number[] = [];

  /** Lines appended so far. */
  get lines(): number {
    return this.starts.length;
  }

  append(json: string): void {
    const room = this.size + json.length * MAX_UTF8_PER_UNIT + 1;
    if (room > this.bytes.length) {
      const bigger = Buffer.allocUnsafe(Math.max(room, this.bytes.length * 2));
      this.bytes.copy(bigger, 0, 0, this.size);
      this.bytes = bigger;
    }
    this.starts.push(this.size);
    this.size += this.bytes.write(json, this.size, 'utf8');
    this.bytes[this.size++] = 0x0a;
  }

  /** Line `i` (0-based), without its LF. */
  line(i: number): string {
    const end = i + 1 < this.starts.length ? this.starts[i + 1]! : this.size;
    return this.bytes.toString('utf8', this.starts[i], end - 1);
  }

  /** The part's bytes, in a Buffer of their own (empty when no line was appended). */
  toBuffer(): Buffer {
    return Buffer.from(this.bytes.subarray(0, this.size));
  }
}
