/**
 * The real-time path's two messages: the job a producer puts on `rt.<pool>`,
 * and the replies a worker pushes onto the producer replica's inbox list.
 * Both are parsed on the way in and on the way out.
 */
import { z } from 'zod';
import { errorCodes, type ErrorCode } from '../errors.ts';
import { taskInputSchema, taskOutputSchema } from './tasks.ts';

export const REALTIME_JOB_NAME = 'infer';

export const realtimeJobSchema = z.object({
  /** Also the BullMQ job id, so the producer can remove a job it gave up on. */
  requestId: z.string().min(1).max(128),
  /** Inbox list key of the producer replica waiting for the answer. */
  replyTo: z.string().min(1),
  /** Epoch ms after which the request is worthless: never started past it. */
  deadlineAt: z.number().int(),
  enqueuedAt: z.number().int(),
  /** Send deltas as they are generated (chat only). */
  stream: z.boolean(),
  input: taskInputSchema,
});
export type RealtimeJob = z.infer<typeof realtimeJobSchema>;

const errorCodeSchema = z.enum(Object.keys(errorCodes) as [ErrorCode, ...ErrorCode[]]);

export const timingsSchema = z.object({
  /** Enqueue → worker start, by the worker's clock. */
  queueMs: z.number(),
  /** Worker start → first token (chat) or result. */
  firstTokenMs: z.number(),
  /** Worker start → done. */
  runMs: z.number(),
});
export type Timings = z.infer<typeof timingsSchema>;

/** Replies: `i` is the request id; messages of one request arrive in order. */
export const replySchema = z.discriminatedUnion('k', [
  z.object({ i: z.string(), k: z.literal('delta'), text: z.string() }),
  z.object({
    i: z.string(),
    k: z.literal('done'),
    output: taskOutputSchema,
    timings: timingsSchema,
    worker: z.string(),
  }),
  z.object({ i: z.string(), k: z.literal('error'), code: errorCodeSchema, message: z.string() }),
]);
export type Reply = z.infer<typeof replySchema>;
export type DeltaReply = Extract<Reply, { k: 'delta' }>;
export type DoneReply = Extract<Reply, { k: 'done' }>;
export type ErrorReply = Extract<Reply, { k: 'error' }>;
