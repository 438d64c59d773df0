/**
 * Which tasks each backend kind runs. The producer answers 400 for a task the
 * pool's backend cannot run, without a round trip to a worker; the worker's
 * backend registry is tested to agree with this table.
 */
import type { BackendKind } from './config.ts';
import type { TaskKind } from './contracts/tasks.ts';

export const backendTasks: Record<BackendKind, readonly TaskKind[]> = {
  embedded: ['chat', 'sentiment', 'summarize'],
  openai: ['chat'],
  echo: ['chat', 'sentiment', 'summarize'],
  sim: ['chat', 'sentiment', 'summarize'],
};
