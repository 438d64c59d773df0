/**
 * What bench:colocate sends, shared by the plain-BullMQ harness and the fleet
 * so that both run the same requests through the same modelled GPU:
 * - real-time: one chat per trace row, with exactly its prompt tokens (the sim
 *   counts ceil(chars / 4)) and max_tokens = its generated tokens (the sim
 *   always generates max_tokens);
 * - bulk: chat records of a fixed prompt and output length.
 */
import { z } from 'zod';
import type { ChatInput } from '../../common/contracts/tasks.ts';

/** The sim engine's knobs (pools[].sim); one value for every setup of a run. */
export const simSpecSchema = z.object({
  timeScale: z.number().gt(0),
  maxNumSeqs: z.number().int().min(1),
  maxNumBatchedTokens: z.number().int().min(1),
  chunkedPrefill: z.boolean(),
  schedulingPolicy: z.enum(['priority', 'fcfs']),
});
export type SimSpec = z.infer<typeof simSpecSchema>;

/** Text of exactly `tokens` sim tokens: 4 characters each, words so that the chat's echo has pieces. */
export function promptText(tokens: number): string {
  return 'tok '.repeat(tokens);
}

export function chatInput(promptTokens: number, outputTokens: number): ChatInput {
  return { task: 'chat', messages: [{ role: 'user', content: promptText(promptTokens) }], maxTokens: outputTokens };
}

/** A real-time job of the harness: the trace row, and when it was enqueued (epoch ms, wall). */
export const rtJobSchema = z.object({
  promptTokens: z.number().int().min(1),
  outputTokens: z.number().int().min(1),
  enqueuedAt: z.number(),
});
export type RtJob = z.infer<typeof rtJobSchema>;

/** A bulk job of the harness: one chunk of `records` identical records. */
export const bulkJobSchema = z.object({
  records: z.number().int().min(1),
  promptTokens: z.number().int().min(1),
  outputTokens: z.number().int().min(1),
});
export type BulkJob = z.infer<typeof bulkJobSchema>;

/** What a real-time job reports (wall ms, the fields of the fleet's reply `timings`). */
export const rtTimingsSchema = z.object({ queueMs: z.number(), firstTokenMs: z.number(), runMs: z.number() });
export type RtTimings = z.infer<typeof rtTimingsSchema>;

export const RT_JOB = 'rt';
export const BULK_JOB = 'bulk';
