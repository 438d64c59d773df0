/**
 * Server-sent events on a hijacked reply. The first event is awaited before
 * the 200 is written, so that a request that fails before its first token
 * (queue full, deadline, bad task) still gets a real HTTP status.
 */
import type { FastifyReply } from 'fastify';

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
