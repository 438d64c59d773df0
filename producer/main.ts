/** Entry point of a producer replica: `bin/start dist/producer/main.js` once bundled (`npm run producer`), or `tsx producer/main.ts`. */
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { runUntilSignal } from '../common/process.ts';
import { startProducer } from './server.ts';

const config = loadConfig();
const logger = createLogger(config.log);
const producer = await startProducer(config, { logger });
runUntilSignal(logger, () => producer.close());
