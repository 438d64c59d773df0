/**
 * The `openai` backend: forwards chat to any OpenAI-compatible server (vLLM,
 * TGI, llama.cpp server, OCI Generative AI's OpenAI-compatible endpoint) with
 * the official client. It always streams, so deltas reach the caller as the
 * upstream produces them, and asks for usage in the last chunk.
 */
import OpenAI, { APIConnectionError, APIError } from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { backendTasks } from '../../common/backend-tasks.ts';
import type { PoolConfig } from '../../common/config.ts';
import type { ChatInput, ChatMessage, ChatOutput, TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import { messageText } from '../../common/contracts/tasks.ts';
import { FleetError } from '../../common/errors.ts';
import type { ModelBackend, RunOptions } from './backend.ts';

/** Statuses worth another try elsewhere or later: timeout, conflict, rate limit, server errors. */
function isTransientStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = Number(headers?.get('retry-after-ms') ?? NaN);
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const seconds = Number(headers?.get('retry-after') ?? NaN);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/**
 * Maps what the client threw onto the error catalogue (a pure function):
 * unreachable upstream, 408/409/429 and 5xx → `backend_failed` (retryable);
 * 401/403 → `internal` (our credentials, not the caller's request, are wrong);
 * other 4xx → `bad_request`; anything else → `backend_failed`. The original
 * error is kept as `cause`.
 */
export function mapUpstreamError(err: unknown, upstream = 'upstream'): FleetError {
  if (err instanceof FleetError) return err;
  if (err instanceof APIConnectionError) {
    return new FleetError('backend_failed', `cannot reach ${upstream}: ${err.message}`, { cause: err });
  }
  if (err instanceof APIError && typeof err.status === 'number') {
    const status = err.status;
    const message = `${upstream} answered ${err.message}`; // the client's message starts with the status
    if (isTransientStatus(status)) {
      const headers: Headers | undefined = err.headers instanceof Headers ? err.headers : undefined;
      return new FleetError('backend_failed', message, { cause: err, retryAfterMs: retryAfterMs(headers) });
    }
    if (status === 401 || status === 403) {
      return new FleetError('internal', `${message} (check the pool's apiKeyEnv)`, { cause: err });
    }
    if (status >= 400 && status < 500) return new FleetError('bad_request', message, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new FleetError('backend_failed', `${upstream} failed: ${message}`, { cause: err });
}

/** Our messages in the client's shape; content parts are flattened for servers that only take strings. */
export function toUpstreamMessages(messages: readonly ChatMessage[]): ChatCompletionMessageParam[] {
  return messages.map((m, i) => {
    const content = messageText(m);
    const name = m.name === undefined ? {} : { name: m.name };
    switch (m.role) {
      case 'system':
      case 'developer':
      case 'user':
        return { role: m.role, content, ...name };
      case 'assistant':
        return { role: 'assistant', content: m.content === null ? null : content, ...name };
      case 'tool':
        // The contract carries no tool_call_id, without which no server accepts a tool message.
        throw new FleetError('bad_request', 'tool messages are not supported by the openai backend', {
          param: `messages[${i}].role`,
        });
    }
  });
}

export function createOpenAiBackend(pool: PoolConfig): ModelBackend {
  if (pool.baseUrl === undefined)
    throw new FleetError('internal', `pool ${pool.name}: the openai backend needs baseUrl`);
  const upstream = pool.baseUrl;
  const model = pool.upstreamModel ?? pool.name;
  const apiKey = (pool.apiKeyEnv === undefined ? undefined : process.env[pool.apiKeyEnv]) ?? 'none';
  // maxRetries 0: the queue retries (with backoff, on another worker if need
  // be); hidden client retries would spend the request's deadline unseen.
  const client = new OpenAI({ baseURL: upstream, apiKey, maxRetries: 0 });

  async function chat(input: ChatInput, { signal, onDelta }: RunOptions): Promise<ChatOutput> {
    let text = '';
    let deltas = 0;
    let finishReason: ChatOutput['finishReason'] = 'stop';
    let usage: ChatOutput['usage'] | undefined;
    try {
      const stream = await client.chat.completions.create(
        {
          model,
          messages: toUpstreamMessages(input.messages),
          stream: true,
          stream_options: { include_usage: true },
          max_tokens: input.maxTokens ?? pool.defaultMaxTokens,
          ...(input.temperature !== undefined && { temperature: input.temperature }),
          ...(input.topP !== undefined && { top_p: input.topP }),
          ...(input.stop !== undefined && { stop: input.stop }),
          ...(input.seed !== undefined && { seed: input.seed }),
        },
        { signal },
      );
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        const piece = choice?.delta.content;
        if (piece) {
          text += piece;
          deltas += 1;
          onDelta?.(piece);
        }
        if (choice?.finish_reason === 'length') finishReason = 'length';
        if (chunk.usage) {
          usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens };
        }
      }
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw mapUpstreamError(err, upstream);
    }
    // The client's stream ends quietly, without throwing, when the signal aborts mid-stream.
    if (signal.aborted) throw signal.reason;
    // Servers that ignore include_usage: count streamed pieces (about one token each); the prompt is unknown.
    return { task: 'chat', text, finishReason, usage: usage ?? { promptTokens: 0, completionTokens: deltas } };
  }

  return {
    kind: 'openai',
    tasks: new Set(backendTasks.openai),
    async run(input: TaskInput, opts: RunOptions): Promise<TaskOutput> {
      if (opts.signal.aborted) throw opts.signal.reason;
      if (input.task !== 'chat') {
        throw new FleetError('unsupported_task', `the openai backend runs chat only, not ${input.task}`);
      }
      return chat(input, opts);
    },
    close: () => Promise.resolve(),
  };
}
