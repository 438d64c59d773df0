/**
 * The `embedded` backend, the no-configuration default: everything runs in
 * this process on the CPU. Chat goes to a GGUF model through node-llama-cpp;
 * sentiment and summaries to wink-nlp. Both models load at creation, so the
 * first request pays no load time and a missing model file fails at start.
 */
import { backendTasks } from '../../common/backend-tasks.ts';
import type { PoolConfig } from '../../common/config.ts';
import type { TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import type { ModelBackend, RunManyOptions, RunOptions } from './backend.ts';
import { EmbeddedLlm } from './embedded-llm.ts';
import { createNlp } from './embedded-nlp.ts';
import { createSentimentClassifier } from './embedded-sentiment.ts';
import { createSummarizer } from './embedded-summarize.ts';

export interface EmbeddedBackendOptions {
  /** Requests the lane runs at once: one LLM context sequence each. */
  concurrency: number;
}

export async function createEmbeddedBackend(pool: PoolConfig, opts: EmbeddedBackendOptions): Promise<ModelBackend> {
  const llm = await EmbeddedLlm.load({
    modelPath: pool.modelPath,
    sequences: opts.concurrency,
    defaultMaxTokens: pool.defaultMaxTokens,
  });
  const nlp = createNlp();
  const sentiment = createSentimentClassifier(nlp);
  const summarizer = createSummarizer(nlp);

  return {
    kind: 'embedded',
    tasks: new Set(backendTasks.embedded),
    async run(input: TaskInput, runOpts: RunOptions): Promise<TaskOutput> {
      // wink-nlp runs synchronously (microseconds to milliseconds per text), so
      // checking the signal once before it starts is enough.
      if (runOpts.signal.aborted) throw runOpts.signal.reason;
      switch (input.task) {
        case 'chat':
          return llm.generate(input, runOpts);
        case 'sentiment':
          return sentiment.classify(input.text);
        case 'summarize':
          return summarizer.summarize(input.text, input.maxSentences);
      }
    },
    /**
     * Micro-batching: sentiment texts go to classifyMany in one call,
     * summaries run in a loop (both synchronous), chats start together and
     * share the LLM's sequences (the slot pool queues any beyond them).
     */
    async runMany(inputs: readonly TaskInput[], runOpts: RunManyOptions): Promise<Array<TaskOutput | Error>> {
      const { signal } = runOpts;
      if (signal.aborted) throw signal.reason;
      const results: Array<TaskOutput | Error> = new Array<TaskOutput | Error>(inputs.length);
      const asError = (err: unknown) => (err instanceof Error ? err : new Error(String(err)));
      const texts: string[] = [];
      const textAt: number[] = [];
      const chats: Promise<void>[] = [];
      inputs.forEach((input, i) => {
        switch (input.task) {
          case 'sentiment':
            texts.push(input.text);
            textAt.push(i);
            break;
          case 'summarize':
            try {
              results[i] = summarizer.summarize(input.text, input.maxSentences);
            } catch (err) {
              results[i] = asError(err);
            }
            break;
          case 'chat':
            chats.push(
              llm.generate(input, { signal }).then(
                (out) => void (results[i] = out),
                (err: unknown) => void (results[i] = asError(err)),
              ),
            );
            break;
        }
      });
      if (texts.length > 0) {
        try {
          sentiment.classifyMany(texts).forEach((out, k) => (results[textAt[k]!] = out));
        } catch {
          // One text broke the batch: classify one by one so only it fails.
          textAt.forEach((i, k) => {
            try {
              results[i] = sentiment.classify(texts[k]!);
            } catch (err) {
              results[i] = asError(err);
            }
          });
        }
      }
      await Promise.all(chats);
      if (signal.aborted) throw signal.reason;
      return results;
    },
    close: () => llm.close(),
  };
}
