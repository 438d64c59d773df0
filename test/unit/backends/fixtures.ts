/** Small builders shared by the backend tests. */
import { configSchema, type PoolConfig } from '../../../common/config.ts';
import type { ChatInput } from '../../../common/contracts/tasks.ts';
import type { RunOptions } from '../../../gpu-worker/backends/index.ts';

/** A pool as the config parser would produce it, with every default applied. */
export function poolFixture(overrides: Record<string, unknown> = {}): PoolConfig {
  return configSchema.parse({ pools: [{ name: 'test', ...overrides }] }).pools[0]!;
}

export function chatInput(text: string, extra: Partial<ChatInput> = {}): ChatInput {
  return { task: 'chat', messages: [{ role: 'user', content: text }], ...extra };
}

/** RunOptions that collect the streamed deltas. */
export function collectDeltas(signal: AbortSignal = new AbortController().signal): RunOptions & { deltas: string[] } {
  const deltas: string[] = [];
  return { signal, deltas, onDelta: (text) => deltas.push(text) };
}
