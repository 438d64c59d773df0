/**
 * A gpu-worker process as gpu-worker/main.ts runs one, with its pool's backend wrapped by
 * poisonBackend (test/helpers/test-backends.ts): inputs naming POISON throw, CRASH ends the process.
 */
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { runUntilSignal } from '../../common/process.ts';
import { createBackend } from '../../gpu-worker/backends/index.ts';
import { startWorker } from '../../gpu-worker/worker.ts';
import { poisonBackend } from '../helpers/test-backends.ts';

export const THROW_MARK = 'POISON';
export const CRASH_MARK = 'CRASH';

const config = loadConfig();
const logger = createLogger(config.log);
const pool = config.pools[0]!;
const backend = poisonBackend(
  await createBackend(pool, { concurrency: pool.lanes.realtime.concurrency }),
  THROW_MARK,
  CRASH_MARK,
);
const worker = await startWorker(config, { logger, backend });
runUntilSignal(logger, () => worker.close());
