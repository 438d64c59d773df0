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
import { createSimBackend, simStartupDelayMs } from './sim.ts';

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
    case 'sim': {
      // A GPU replica is not ready the moment its process is: wait out the modelled start-up.
      const delay = simStartupDelayMs(pool.sim.startupMs, pool.sim.timeScale, process.uptime() * 1000);
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      return createSimBackend({ ...pool.sim, defaultMaxTokens: pool.defaultMaxTokens });
    }
    default: {
      const unknown: never = pool.backend;
      throw new Error(`unknown backend kind: ${String(unknown)}`);
    }
  }
}
