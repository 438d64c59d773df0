/** Entry point of a gpu-worker pod: `tsx gpu-worker/main.ts` (WORKER_POOL picks the pool). */
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { runUntilSignal } from '../common/process.ts';
import { startWorker } from './worker.ts';

const config = loadConfig();
const logger = createLogger(config.log);
const worker = await startWorker(config, { logger });
// Started by the local launcher: tell it where we are.
process.send?.({ type: 'ready', workerId: worker.workerId, pool: worker.pool.name, metricsUrl: worker.metricsUrl });
runUntilSignal(logger, () => worker.close());
// If the launcher dies, its IPC channel closes: drain rather than linger as an orphan.
process.on('disconnect', () => void worker.close().then(() => process.exit(0)));
