/**
 * Native task API `POST /v1/infer`: chat, sentiment and summarize with a
 * per-request timeout. With `stream: true` (chat), deltas arrive as
 * server-sent events `delta`, then one `done` (or `error`).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { inferRequestSchema, TIMEOUT_HEADER } from '../../common/contracts/api.ts';
import { FleetError } from '../../common/errors.ts';
import { callerGone, errorBody } from '../http-errors.ts';
import type { RealtimeService } from '../realtime-service.ts';
import { streamReplies } from '../sse.ts';
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

      return streamReplies(reply, pending, {
        reply(sse, r) {
          if (r.k === 'delta') sse.send({ text: r.text }, 'delta');
          else sse.send({ id: pending.requestId, model: body.model, output: r.output, timings: r.timings }, 'done');
        },
        end: (sse) => sse.end(),
        error: (sse, err) => sse.send(errorBody(err), 'error'),
      });
    });
  };
