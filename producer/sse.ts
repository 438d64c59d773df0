/**
 * Server-sent events on a hijacked reply. The first event is awaited before
 * the 200 is written, so that a request that fails before its first token
 * (queue full, deadline, bad task) still gets a real HTTP status.
 */
import type { FastifyReply } from 'fastify';
import type { DeltaReply, DoneReply } from '../common/contracts/realtime.ts';
import type { FleetError } from '../common/errors.ts';
import { sendError, toHttpError } from './http-errors.ts';
import type { PendingRequest } from './pending-request.ts';

export interface SseWriter {
  send(data: unknown, event?: string): void;
  end(finalLine?: string): void;
}

export function openSse(reply: FastifyReply, headers: Record<string, string> = {}): SseWriter {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    ...headers,
  });
  res.flushHeaders();
  return {
    send(data, event) {
      if (res.writableEnded || res.destroyed) return;
      res.write(
        `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`,
      );
    },
    end(finalLine) {
      if (res.writableEnded || res.destroyed) return;
      res.end(finalLine === undefined ? undefined : `data: ${finalLine}\n\n`);
    },
  };
}

export interface StreamWriter {
  /** Right after the 200 is written. */
  start?(sse: SseWriter): void;
  reply(sse: SseWriter, reply: DeltaReply | DoneReply): void;
  /** After the done reply; should end the stream. */
  end(sse: SseWriter): void;
  /** An error after the headers went out: report it in-band (the stream is ended after). */
  error(sse: SseWriter, err: FleetError): void;
}

/** Streams a request's replies as SSE, holding the 200 back until the first one. */
export async function streamReplies(
  reply: FastifyReply,
  pending: PendingRequest,
  write: StreamWriter,
): Promise<FastifyReply> {
  const replies = pending.replies();
  let first: Awaited<ReturnType<typeof replies.next>>;
  try {
    first = await replies.next();
  } catch (err) {
    return sendError(reply, toHttpError(err));
  }
  const sse = openSse(reply, { 'x-request-id': pending.requestId });
  write.start?.(sse);
  try {
    for (let next = first; !next.done; next = await replies.next()) write.reply(sse, next.value);
    write.end(sse);
  } catch (err) {
    write.error(sse, toHttpError(err));
    sse.end();
  }
  return reply;
}
