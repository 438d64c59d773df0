/**
 * OpenAI-compatible `POST /v1/chat/completions`, stream and non-stream, so
 * existing OpenAI clients work unchanged. `model` names the pool.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import {
  chatCompletionBody,
  chatCompletionRequestSchema,
  chatUsage,
  TIMEOUT_HEADER,
  toChatInput,
} from '../../common/contracts/api.ts';
import type { ChatOutput } from '../../common/contracts/tasks.ts';
import { callerGone, errorBody } from '../http-errors.ts';
import type { RealtimeService } from '../realtime-service.ts';
import { streamReplies } from '../sse.ts';
import { parseTimeoutHeader } from './timeout-header.ts';

export const chatCompletionsRoute =
  (service: RealtimeService): FastifyPluginAsyncZod =>
  async (app) => {
    app.post('/v1/chat/completions', { schema: { body: chatCompletionRequestSchema } }, async (request, reply) => {
      const body = request.body;
      const stream = body.stream === true;
      const pending = await service.submit({
        pool: body.model,
        input: toChatInput(body),
        stream,
        timeoutMs: parseTimeoutHeader(request.headers[TIMEOUT_HEADER]),
        signal: callerGone(reply),
      });
      const id = `chatcmpl-${pending.requestId}`;
      const created = Math.floor(Date.now() / 1000);
      reply.header('x-request-id', pending.requestId);

      if (!stream) {
        const done = await pending.result();
        const output = done.output as ChatOutput;
        return reply.send(chatCompletionBody(id, created, body.model, output));
      }

      const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) => ({
        id,
        object: 'chat.completion.chunk',
        created,
        model: body.model,
        choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
        ...extra,
      });
      return streamReplies(reply, pending, {
        start: (sse) => sse.send(chunk({ role: 'assistant', content: '' }, null)),
        reply(sse, r) {
          if (r.k === 'delta') {
            sse.send(chunk({ content: r.text }, null));
            return;
          }
          const output = r.output as ChatOutput;
          sse.send(chunk({}, output.finishReason, { usage: chatUsage(output) }));
          if (body.stream_options?.include_usage) {
            sse.send({
              id,
              object: 'chat.completion.chunk',
              created,
              model: body.model,
              choices: [],
              usage: chatUsage(output),
            });
          }
        },
        end: (sse) => sse.end('[DONE]'),
        // Headers are gone: report in-band, as OpenAI does.
        error: (sse, err) => sse.send(errorBody(err)),
      });
    });
  };
