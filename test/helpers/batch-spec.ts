/** A batch spec for tests: pool `p`, tenant `t`, a day's window, every field overridable. */
import { newBatchId, type BatchSpec } from '../../common/batch/batch-state.ts';

/** A batch spec on pool `p` created at `createdAt` (defaults for everything else). */
export function batchSpec(createdAt: number, overrides: Partial<BatchSpec> = {}): BatchSpec {
  return {
    id: newBatchId(createdAt),
    endpoint: '/v1/infer',
    model: 'p',
    input: 'file:///in/x.jsonl',
    outputPrefix: 'file:///out/',
    completionWindow: '24h',
    createdAt,
    expiresAt: createdAt + 86_400_000,
    metadata: null,
    priority: 0,
    tenant: 't',
    source: 'api',
    ...overrides,
  };
}
