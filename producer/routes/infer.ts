/**
 * Native task API `POST /v1/infer`: chat, sentiment and summarize with a
 * per-request timeout. With `stream: true` (chat), deltas arrive as
 * server-sent events `delta`, then one `done` (or `error`).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { inferRequestSchema, TIMEOUT_HEADER } from '../../common/contracts/api.ts';
import { FleetError } from '../../common/errors.ts';
import { callerGone, errorBody, sendError, toHttpError } from '../http-errors.ts';
import type { RealtimeService } from '../realtime-service.ts';
import { openSse } from '../sse.ts';
import { parseTimeoutHeader } from './timeout-header.ts';

export const inferRoute =
  (service: RealtimeService): FastifyPluginAsyncZod =>
  async (app) => {
    app.post('/v1/infer', { schema: { body: inferRequestSchema } }, async (request, reply) => {
      const body = request.body;
      if (body.stream && body.input.task !== 'chat') {
        throw new FleetError('bad_request', 'stream is only supported for task chat', { param: 'stream' });
      }
      const pending = await service.submit({
        pool: body.model,
        input: body.input,
        stream: body.stream,
        timeoutMs: body.timeout_ms ?? parseTimeoutHeader(request.headers[TIMEOUT_HEADER]),
        signal: callerGone(reply),
      });
      reply.header('x-request-id', pending.requestId);
      if (!body.stream) {
        const done = await pending.result();
        return reply.send({ id: pending.requestId, model: body.model, output: done.output, timings: done.timings });
      }

      const replies = pending.replies();
      let first: Awaited<ReturnType<typeof replies.next>>;
      try {
        first = await replies.next();
      } catch (err) {
        return sendError(reply, toHttpError(err));
      }
      const sse = openSse(reply, { 'x-request-id': pending.requestId });
      try {
        for (let next = first; !next.done; next = await replies.next()) {
          const r = next.value;
          if (r.k === 'delta') sse.send({ text: r.text }, 'delta');
          else sse.send({ id: pending.requestId, model: body.model, output: r.output, timings: r.timings }, 'done');
        }
      } catch (err) {
        sse.send(errorBody(toHttpError(err)), 'error');
      }
      sse.end();
      return reply;
    });
  };
