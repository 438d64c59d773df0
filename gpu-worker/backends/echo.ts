/**
 * The `echo` backend: no model at all, and no artificial delay. It exists for
 * benchmarks and tests, to measure the fleet itself (queues, lanes, reply
 * path, streaming) without model time in the numbers. Answers are
 * deterministic and cheap:
 * - chat: the last user message, streamed word by word;
 * - sentiment: neutral, score 0;
 * - summarize: the first `maxSentences` sentences, split naively.
 */
import { backendTasks } from '../../common/backend-tasks.ts';
import type { ChatInput, ChatOutput, SummarizeOutput, TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import { messageText } from '../../common/contracts/tasks.ts';
import type { ModelBackend, RunManyOptions, RunOptions } from './backend.ts';

/** Words with their trailing whitespace, so the pieces concatenate back to the text. */
export function wordPieces(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? (text === '' ? [] : [text]);
}

/** Naive split after . ! or ? followed by whitespace. */
export function naiveSentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function echoChat(input: ChatInput, { signal, onDelta }: RunOptions): ChatOutput {
  const lastUser = input.messages.findLast((m) => m.role === 'user');
  const text = lastUser === undefined ? '' : messageText(lastUser);
  const maxTokens = input.maxTokens ?? Number.POSITIVE_INFINITY;
  const pieces = wordPieces(text);
  const kept = pieces.slice(0, maxTokens);
  for (const piece of kept) {
    if (signal.aborted) throw signal.reason;
    onDelta?.(piece);
  }
  const promptWords = input.messages.reduce((n, m) => n + wordPieces(messageText(m)).length, 0);
  return {
    task: 'chat',
    text: kept.join(''),
    finishReason: kept.length < pieces.length ? 'length' : 'stop',
    // "Tokens" are words here: there is no tokenizer, and benchmarks only need a stable count.
    usage: { promptTokens: promptWords, completionTokens: kept.length },
  };
}

function echoSummary(text: string, maxSentences: number): SummarizeOutput {
  const sentences = naiveSentences(text).slice(0, maxSentences);
  return { task: 'summarize', summary: sentences.join(' '), sentences: sentences.map((_, i) => i) };
}

function echoRun(input: TaskInput, opts: RunOptions): TaskOutput {
  if (opts.signal.aborted) throw opts.signal.reason;
  switch (input.task) {
    case 'chat':
      return echoChat(input, opts);
    case 'sentiment':
      return { task: 'sentiment', label: 'neutral', score: 0 };
    case 'summarize':
      return echoSummary(input.text, input.maxSentences);
  }
}

export function createEchoBackend(): ModelBackend {
  return {
    kind: 'echo',
    tasks: new Set(backendTasks.echo),
    async run(input: TaskInput, opts: RunOptions): Promise<TaskOutput> {
      return echoRun(input, opts);
    },
    async runMany(inputs: readonly TaskInput[], opts: RunManyOptions): Promise<Array<TaskOutput | Error>> {
      if (opts.signal.aborted) throw opts.signal.reason;
      return inputs.map((input) => {
        try {
          return echoRun(input, opts);
        } catch (err) {
          if (opts.signal.aborted) throw opts.signal.reason;
          return err instanceof Error ? err : new Error(String(err));
        }
      });
    },
    close: () => Promise.resolve(),
  };
}
