/**
 * What the producer answers, as zod schemas: a server's reply is a boundary
 * too, so every body and stream event is parsed before a caller sees it.
 * Unknown fields are stripped, not rejected, so an older client keeps working
 * against a newer server.
 *
 * These mirror what producer/routes/*.ts send; they belong with the request
 * schemas in common/contracts/api.ts, and should move there.
 */
import { z } from 'zod';
import { timingsSchema } from '../../common/contracts/realtime.ts';
import { chatOutputSchema, taskOutputSchema } from '../../common/contracts/tasks.ts';

/** OpenAI's error shape, as producer/http-errors.ts writes it (also the SSE `error` event). */
export const errorResponseSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string().nullish(),
    param: z.string().nullish(),
    code: z.string().nullish(),
    /** Set on retryable errors; the only back-off hint an error inside a stream can carry. */
    retry_after_ms: z.number().nullish(),
  }),
});

/** `POST /v1/infer` without streaming, and the SSE `done` event. */
export const inferResponseSchema = z.object({
  id: z.string(),
  model: z.string(),
  output: taskOutputSchema,
  timings: timingsSchema,
});

/** SSE `delta` event of `POST /v1/infer` with `stream: true`. */
export const deltaEventSchema = z.object({ text: z.string() });

/** SSE `done` event of a chat stream. */
export const chatDoneEventSchema = inferResponseSchema.extend({ output: chatOutputSchema });

/** `GET /v1/models`: the pools, in OpenAI's list shape plus what each can run. */
export const modelListSchema = z.object({
  object: z.literal('list'),
  data: z.array(
    z.object({
      id: z.string(),
      created: z.number(),
      owned_by: z.string(),
      /** The pool's backend kind (embedded, openai, echo, …). */
      backend: z.string(),
      /** The tasks it runs (chat, sentiment, summarize, …). */
      tasks: z.array(z.string()),
      /** Live workers, or null when the producer could not tell (Redis unreachable). */
      workers: z.number().int().nullable(),
    }),
  ),
});
