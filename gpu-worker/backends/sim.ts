/**
 * The `sim` backend, for benchmarks and tests (never the default): a modelled
 * continuous-batching LLM server on one GPU (sim-engine.ts), so that time to
 * first token and time between tokens come from load rather than from a
 * fixed delay. One backend instance is one engine; the gpu-worker creates one
 * per process and hands it to both lanes, so real-time chats and bulk records
 * contend for the same steps.
 *
 * Token counts (there is no tokenizer): input tokens = ceil(characters / 4)
 * of the text the task sends (a benchmark asks for exactly N prompt tokens
 * with 4·N characters of content); output tokens:
 * - chat: max_tokens (else the pool's defaultMaxTokens), always generated in
 *   full (like vLLM's ignore_eos), finish reason `length`;
 * - sentiment: 1 (the label);
 * - summarize: the tokens of the extractive summary it returns.
 * Answers are cheap and deterministic, like echo's: chat streams the last
 * user message's words over and over, one per token.
 */
import { backendTasks } from '../../common/backend-tasks.ts';
import type { ChatInput, ChatOutput, TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import { messageText } from '../../common/contracts/tasks.ts';
import {
  BULK_PRIORITY,
  REALTIME_PRIORITY,
  type ModelBackend,
  type RunManyOptions,
  type RunOptions,
} from './backend.ts';
import { naiveSentences, wordPieces } from './echo.ts';
import type { Calibration } from '../../common/sim/sim-model.ts';
import { SimEngine } from './sim-engine.ts';

export interface SimBackendOptions {
  /** Wall time per unit of model time (0.1 = 10× faster); divide measured latencies by it. */
  timeScale: number;
  /** Sequences in one step (vLLM's max_num_seqs). */
  maxNumSeqs: number;
  /** Tokens in one step (vLLM's max_num_batched_tokens). */
  maxNumBatchedTokens: number;
  /** Stall-free chunked prefill (vLLM V1, Sarathi-Serve) rather than prefill-first steps (vLLM V0). */
  chunkedPrefill: boolean;
  /** `fcfs` ignores request priorities (vLLM's default policy); `priority` honours them. Default priority. */
  schedulingPolicy?: 'priority' | 'fcfs';
  /** Output tokens of a chat that sets no max_tokens. */
  defaultMaxTokens: number;
  calibration?: Calibration;
  now?: () => number;
}

/**
 * Wall ms still to wait before a replica with `startupMs` of modelled start-up (model time) is
 * ready, its process having run `uptimeMs`: the process's own boot counts toward the start-up.
 */
export function simStartupDelayMs(startupMs: number, timeScale: number, uptimeMs: number): number {
  return Math.max(0, startupMs * timeScale - uptimeMs);
}

/** The sim's token estimate: ceil(chars / 4), at least 1. */
export function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

interface Job {
  promptTokens: number;
  outputTokens: number;
  /** Text of output token i (chat only). */
  piece?: (i: number) => string;
  output: () => TaskOutput;
}

function chatJob(input: ChatInput, defaultMaxTokens: number): Job {
  const promptTokens = estimateTokens(input.messages.map(messageText).join(''));
  const outputTokens = input.maxTokens ?? defaultMaxTokens;
  const lastUser = input.messages.findLast((m) => m.role === 'user');
  const words = wordPieces(lastUser === undefined ? '' : messageText(lastUser));
  const piece = (i: number) => (words.length === 0 ? 'token ' : words[i % words.length]!);
  const output = (): ChatOutput => ({
    task: 'chat',
    text: Array.from({ length: outputTokens }, (_, i) => piece(i)).join(''),
    finishReason: 'length',
    usage: { promptTokens, completionTokens: outputTokens },
  });
  return { promptTokens, outputTokens, piece, output };
}

function jobFor(input: TaskInput, defaultMaxTokens: number): Job {
  switch (input.task) {
    case 'chat':
      return chatJob(input, defaultMaxTokens);
    case 'sentiment':
      return {
        promptTokens: estimateTokens(input.text),
        outputTokens: 1,
        output: () => ({ task: 'sentiment', label: 'neutral', score: 0 }),
      };
    case 'summarize': {
      const kept = naiveSentences(input.text).slice(0, input.maxSentences);
      const summary = kept.join(' ');
      return {
        promptTokens: estimateTokens(input.text),
        outputTokens: estimateTokens(summary),
        output: () => ({ task: 'summarize', summary, sentences: kept.map((_, i) => i) }),
      };
    }
  }
}

export function createSimBackend(opts: SimBackendOptions): ModelBackend {
  const engine = new SimEngine(opts);

  const fcfs = opts.schedulingPolicy === 'fcfs';
  const toRequest = (job: Job, priority: number, onDelta?: (text: string) => void) => ({
    promptTokens: job.promptTokens,
    outputTokens: job.outputTokens,
    priority: fcfs ? REALTIME_PRIORITY : priority,
    onToken: job.piece === undefined || onDelta === undefined ? undefined : (i: number) => onDelta(job.piece!(i)),
  });

  return {
    kind: 'sim',
    tasks: new Set(backendTasks.sim),
    async run(input: TaskInput, { signal, onDelta, priority = REALTIME_PRIORITY }: RunOptions): Promise<TaskOutput> {
      const job = jobFor(input, opts.defaultMaxTokens);
      await engine.submit(toRequest(job, priority, onDelta), signal);
      return job.output();
    },
    /** Every input joins the engine's queue at once, in order; the engine batches them. */
    async runMany(
      inputs: readonly TaskInput[],
      { signal, priority = BULK_PRIORITY }: RunManyOptions,
    ): Promise<Array<TaskOutput | Error>> {
      if (signal.aborted) throw signal.reason;
      const jobs = inputs.map((input) => jobFor(input, opts.defaultMaxTokens));
      const settled = await Promise.allSettled(
        engine.submitAll(
          jobs.map((job) => toRequest(job, priority)),
          signal,
        ),
      );
      if (signal.aborted) throw signal.reason;
      return settled.map((s, i) =>
        s.status === 'fulfilled'
          ? jobs[i]!.output()
          : s.reason instanceof Error
            ? s.reason
            : new Error(String(s.reason)),
      );
    },
    close: () => {
      engine.close();
      return Promise.resolve();
    },
  };
}
