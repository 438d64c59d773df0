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
