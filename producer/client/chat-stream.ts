/**
 * A streaming chat as the caller sees it: an async iterable of text deltas
 * (`for await (const text of stream)`) plus `result`, the final ChatOutput.
 * Events are read as they arrive whether or not anyone iterates, so awaiting
 * `result` alone works too. An error (before the first token, or an SSE
 * `error` event after it) is thrown from the iterator and rejects `result`.
 * Leaving the loop early cancels the request: the producer sees the caller
 * go away and withdraws the job, and `result` rejects with `cancelled`.
 */
import type { ChatOutput } from '../../common/contracts/tasks.ts';
import { errorCodes, isErrorCode } from '../../common/errors.ts';
import { errorFromBody, InterfleetApiError } from './errors.ts';
import { sseEvents } from './sse.ts';
import { chatDoneEventSchema, deltaEventSchema } from './wire.ts';
import type { z } from 'zod';

/** What the stream needs from the client: the opened response, and how to name a failure. */
export interface ChatStreamSource {
  /** Resolves to a 2xx event-stream response; rejects with an InterfleetApiError. */
  response: Promise<Response>;
  /** Maps a failure while reading (network, deadline, cancel) onto an InterfleetApiError. */
  fail(err: unknown): InterfleetApiError;
  /** Cancels the request (the caller stopped iterating). */
  cancel(): void;
}

export class ChatStream implements AsyncIterable<string> {
  /** The final output (text, finishReason, usage); rejects with InterfleetApiError. */
  readonly result: Promise<ChatOutput>;
  private readonly deltas: string[] = [];
  private readonly waiters: Array<() => void> = [];
  private failure: InterfleetApiError | undefined;
  private finished = false;
  private iterated = false;

  constructor(private readonly source: ChatStreamSource) {
    this.result = this.pump().then(
      (output) => {
        this.finished = true;
        this.notify();
        return output;
      },
      (err: unknown) => {
        this.failure = err instanceof InterfleetApiError ? err : source.fail(err);
        this.notify();
        throw this.failure;
      },
    );
    // Whoever only iterates still sees the error; do not report it as unhandled.
    this.result.catch(() => undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.iterated) throw new Error('a ChatStream can be iterated only once');
    this.iterated = true;
    return this.deltasUntilDone();
  }

  private async *deltasUntilDone(): AsyncGenerator<string> {
    try {
      for (;;) {
        const text = this.deltas.shift();
        if (text !== undefined) {
          yield text;
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.finished) return;
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
    } finally {
      if (!this.finished && !this.failure) this.source.cancel();
    }
  }

  private notify(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  private async pump(): Promise<ChatOutput> {
    const res = await this.source.response;
    if (res.body === null)
      throw new InterfleetApiError('internal', 'the stream response has no body', { status: res.status });
    const requestId = res.headers.get('x-request-id') ?? undefined;
    for await (const event of sseEvents(res.body)) {
      switch (event.event) {
        case 'delta':
          this.deltas.push(parseEvent(deltaEventSchema, event.data, 'delta').text);
          this.notify();
          break;
        case 'done':
          return parseEvent(chatDoneEventSchema, event.data, 'done').output;
        case 'error':
          throw streamError(event.data, requestId);
        default:
          break; // events this client does not know are skipped
      }
    }
    throw new InterfleetApiError('unavailable', 'the stream ended before its final event', {
      status: res.status,
      requestId,
    });
  }
}

function parseEvent<T>(schema: z.ZodType<T>, data: string, name: string): T {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch (err) {
    throw new InterfleetApiError('internal', `the producer sent a ${name} event that is not JSON`, { cause: err });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new InterfleetApiError('internal', `the producer sent a malformed ${name} event: ${parsed.error.message}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

/** An SSE `error` event: the HTTP status is long gone (200), so the status is the one its code maps to. */
function streamError(data: string, requestId: string | undefined): InterfleetApiError {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    json = undefined;
  }
  const code = (json as { error?: { code?: unknown } } | undefined)?.error?.code;
  const status = typeof code === 'string' && isErrorCode(code) ? errorCodes[code].status : 500;
  return errorFromBody(json, { status, message: `stream error: ${data.slice(0, 200)}` }, { requestId });
}
