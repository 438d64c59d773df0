/** Entry point of a scheduler replica: `tsx scheduler/main.ts`. Run two or more; one leads. */
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { runUntilSignal } from '../common/process.ts';
import { startScheduler } from './scheduler.ts';

const config = loadConfig();
const logger = createLogger(config.log);
const scheduler = await startScheduler(config, { logger });
runUntilSignal(logger, () => scheduler.close());
