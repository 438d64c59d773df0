/**
 * A producer or scheduler in its own process for bench:batch (BENCH_ROLE),
 * so the benchmark can read each role's peak RSS (VmHWM) on its own. Config
 * comes from the environment like the real entry points; `ready` carries the
 * API's URL.
 */
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { startProducer } from '../../producer/server.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';

const config = loadConfig();
const logger = createLogger(config.log);
const role = process.env.BENCH_ROLE;
let close: () => Promise<void>;
let url: string | undefined;
if (role === 'producer') {
  const producer = await startProducer(config, { logger, port: 0 });
  url = producer.url;
  close = () => producer.close(1000);
} else if (role === 'scheduler') {
  const scheduler = await startScheduler(config, { logger });
  close = () => scheduler.close();
} else {
  throw new Error(`BENCH_ROLE must be producer or scheduler, not ${role}`);
}
process.send?.({ type: 'ready', url });
process.on('SIGTERM', () => void close().then(() => process.exit(0)));
