/**
 * Bodies of the producer's HTTP API. `/v1/chat/completions` follows OpenAI's
 * request shape (fields we cannot honour are rejected by name, not ignored);
 * `/v1/infer` is the native task API.
 */
import { z } from 'zod';
import {
  chatMessageSchema,
  sentimentInputSchema,
  summarizeInputSchema,
  chatInputSchema,
  type ChatInput,
  type ChatOutput,
} from './tasks.ts';

export const TIMEOUT_HEADER = 'x-interfleet-timeout-ms';

/** The `priority` of a submitted batch or training job: 0 to 9, higher first within its tenant or pool. */
export const submissionPrioritySchema = z
  .number({ error: 'priority must be a number' })
  .int('priority must be an integer')
  .min(0, 'priority is 0 to 9')
  .max(9, 'priority is 0 to 9')
  .default(0);

export const chatCompletionRequestSchema = z
  .object({
    model: z.string().min(1, 'model is required'),
    messages: z.array(chatMessageSchema).min(1, 'messages must hold at least one message'),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
    max_tokens: z.number().int().min(1).max(32768).nullish(),
    max_completion_tokens: z.number().int().min(1).max(32768).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().gt(0).max(1).nullish(),
    stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
    seed: z.number().int().nullish(),
    n: z.literal(1, { error: 'only n = 1 is supported' }).nullish(),
    user: z.string().optional(),
  })
  .loose();
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

const inferTaskSchema = z.discriminatedUnion('task', [chatInputSchema, sentimentInputSchema, summarizeInputSchema]);

export const inferRequestSchema = z.object({
  /** The pool to run on (OpenAI calls it the model). */
  model: z.string().min(1, 'model is required'),
  input: inferTaskSchema,
  /** Deadline for this request; the producer's default applies when absent. */
  timeout_ms: z.number().int().min(1).optional(),
  /** Stream deltas as server-sent events (chat only). */
  stream: z.boolean().default(false),
});
export type InferRequest = z.infer<typeof inferRequestSchema>;

/** The chat task an OpenAI chat-completions body asks for (the API and batch lines share it). */
export function toChatInput(
  body: Pick<
    ChatCompletionRequest,
    'messages' | 'max_tokens' | 'max_completion_tokens' | 'temperature' | 'top_p' | 'stop' | 'seed'
  >,
): ChatInput {
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  return {
    task: 'chat',
    messages: body.messages,
    ...(maxTokens != null ? { maxTokens } : {}),
    ...(body.temperature != null ? { temperature: body.temperature } : {}),
    ...(body.top_p != null ? { topP: body.top_p } : {}),
    ...(body.stop != null ? { stop: typeof body.stop === 'string' ? [body.stop] : body.stop } : {}),
    ...(body.seed != null ? { seed: body.seed } : {}),
  };
}

/** OpenAI's `usage` of a chat completion. */
export function chatUsage(output: ChatOutput) {
  const { promptTokens, completionTokens } = output.usage;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** A non-streamed `chat.completion` body: the real-time API's answer and a batch output line's body. */
export function chatCompletionBody(id: string, created: number, model: string, output: ChatOutput) {
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: output.text },
        finish_reason: output.finishReason,
        logprobs: null,
      },
    ],
    usage: chatUsage(output),
  };
}
