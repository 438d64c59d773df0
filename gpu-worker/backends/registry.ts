/**
 * The one backend registry: a switch on the pool's configured kind. Adding a
 * backend means a case here and a row in common/backend-tasks.ts (a test
 * checks that each backend's `tasks` match that table).
 */
import type { PoolConfig } from '../../common/config.ts';
import type { ModelBackend } from './backend.ts';
import { createEchoBackend } from './echo.ts';
import { createEmbeddedBackend } from './embedded.ts';
import { createOpenAiBackend } from './openai-compatible.ts';
import { createSimBackend } from './sim.ts';

export interface CreateBackendOptions {
  /** Requests the lane runs at once; the embedded LLM sizes its sequences by it. */
  concurrency: number;
}

export async function createBackend(pool: PoolConfig, opts: CreateBackendOptions): Promise<ModelBackend> {
  switch (pool.backend) {
    case 'embedded':
      return createEmbeddedBackend(pool, opts);
    case 'openai':
      return createOpenAiBackend(pool);
    case 'echo':
      return createEchoBackend();
    case 'sim':
      return createSimBackend({ ...pool.sim, defaultMaxTokens: pool.defaultMaxTokens });
    default: {
      const unknown: never = pool.backend;
      throw new Error(`unknown backend kind: ${String(unknown)}`);
    }
  }
}
