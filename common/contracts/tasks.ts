/**
 * What a model backend is asked to do, and what it answers: the task inputs
 * and outputs shared by the producer (which validates them at the API), the
 * queue (which carries them) and the gpu-worker (which runs them).
 */
import { z } from 'zod';
import { trainedModelNameSchema } from './trained-models.ts';

export const taskKinds = ['chat', 'sentiment', 'summarize'] as const;
export type TaskKind = (typeof taskKinds)[number];

const textPart = z.object({ type: z.literal('text'), text: z.string() });

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  /** A string, or OpenAI's array of content parts (text parts only). */
  content: z.union([z.string(), z.array(textPart)]).nullable(),
  name: z.string().optional(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

export const chatInputSchema = z.object({
  task: z.literal('chat'),
  messages: z.array(chatMessageSchema).min(1, 'messages must hold at least one message'),
  maxTokens: z.number().int().min(1).max(32768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  topP: z.number().gt(0).max(1).optional(),
  stop: z.array(z.string()).max(4).optional(),
  seed: z.number().int().optional(),
});

export const sentimentInputSchema = z.object({
  task: z.literal('sentiment'),
  text: z.string().min(1, 'text must not be empty'),
  /** A trained model's name (GET /v1/trained-models); absent: the pool's own classifier (the lexicon). */
  model: trainedModelNameSchema.optional(),
});

export const summarizeInputSchema = z.object({
  task: z.literal('summarize'),
  text: z.string().min(1, 'text must not be empty'),
  /** How many sentences the extractive summary keeps. */
  maxSentences: z.number().int().min(1).max(50).default(3),
});

export const taskInputSchema = z.discriminatedUnion('task', [
  chatInputSchema,
  sentimentInputSchema,
  summarizeInputSchema,
]);
export type TaskInput = z.infer<typeof taskInputSchema>;
export type ChatInput = z.infer<typeof chatInputSchema>;
export type SentimentInput = z.infer<typeof sentimentInputSchema>;
export type SummarizeInput = z.infer<typeof summarizeInputSchema>;

export const usageSchema = z.object({
  promptTokens: z.number().int().min(0),
  completionTokens: z.number().int().min(0),
});
export type Usage = z.infer<typeof usageSchema>;

export const chatOutputSchema = z.object({
  task: z.literal('chat'),
  text: z.string(),
  finishReason: z.enum(['stop', 'length']),
  usage: usageSchema,
});

export const sentimentOutputSchema = z.object({
  task: z.literal('sentiment'),
  label: z.enum(['positive', 'negative', 'neutral']),
  /** Signed polarity in [-1, 1]. */
  score: z.number().min(-1).max(1),
});

export const summarizeOutputSchema = z.object({
  task: z.literal('summarize'),
  summary: z.string(),
  /** Indexes (0-based, in input order) of the sentences kept. */
  sentences: z.array(z.number().int().min(0)),
});

export const taskOutputSchema = z.discriminatedUnion('task', [
  chatOutputSchema,
  sentimentOutputSchema,
  summarizeOutputSchema,
]);
export type TaskOutput = z.infer<typeof taskOutputSchema>;
export type ChatOutput = z.infer<typeof chatOutputSchema>;
export type SentimentOutput = z.infer<typeof sentimentOutputSchema>;
export type SummarizeOutput = z.infer<typeof summarizeOutputSchema>;

/** The output type that belongs to an input type. */
export type OutputFor<I extends TaskInput> = Extract<TaskOutput, { task: I['task'] }>;

/** Flattens message content (string or text parts) to plain text. */
export function messageText(message: ChatMessage): string {
  if (message.content === null) return '';
  if (typeof message.content === 'string') return message.content;
  return message.content.map((p) => p.text).join('');
}
