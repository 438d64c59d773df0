/**
 * Backends with controllable timing for lifecycle tests (deadlines, drains,
 * cancellation). They are test doubles for model time only: the queues,
 * Redis, lanes and reply path they run under are the real ones.
 */
import type { TaskInput, TaskOutput } from '../../common/contracts/tasks.ts';
import type { ModelBackend, RunOptions } from '../../gpu-worker/backends/backend.ts';

/** Answers every task after `delayMs`, or rejects with the abort reason if aborted first. */
export function slowBackend(
  delayMs: number,
  seen: { started: string[]; aborted: number } = { started: [], aborted: 0 },
): ModelBackend {
  return {
    kind: 'echo',
    tasks: new Set(['chat', 'sentiment', 'summarize']),
    async run(input: TaskInput, { signal }: RunOptions): Promise<TaskOutput> {
      seen.started.push(input.task);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, delayMs);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          seen.aborted++;
          reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
        });
      });
      if (input.task === 'chat') {
        return { task: 'chat', text: 'slow', finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1 } };
      }
      if (input.task === 'sentiment') return { task: 'sentiment', label: 'neutral', score: 0 };
      return { task: 'summarize', summary: '', sentences: [] };
    },
    async close() {},
  };
}

/**
 * Wraps a real backend with poison inputs, for the fault suite's poison-job row: a task whose
 * text contains `throwMark` makes the call throw (a single run, or the whole micro-batch it is
 * in, as a backend that breaks on one input does); one containing `crashMark` ends the worker
 * process at once (exit code 70), as a native backend's crash would. Everything else runs on `inner`.
 */
export function poisonBackend(inner: ModelBackend, throwMark: string, crashMark: string): ModelBackend {
  const check = (input: TaskInput): void => {
    const text = JSON.stringify(input);
    if (text.includes(crashMark)) process.exit(70);
    if (text.includes(throwMark)) throw new Error(`poison input: the backend fails on ${throwMark}`);
  };
  const runMany = inner.runMany?.bind(inner);
  return {
    kind: inner.kind,
    tasks: inner.tasks,
    async run(input, opts) {
      check(input);
      return inner.run(input, opts);
    },
    ...(runMany && {
      async runMany(inputs, opts) {
        inputs.forEach(check);
        return runMany(inputs, opts);
      },
    }),
    close: () => inner.close(),
  };
}
