/**
 * pino, JSON by default and pretty on a TTY. Roles bind `{ role, pool }` and
 * request paths `{ jobId }` through child loggers. Prompt text is only ever
 * logged at debug or below.
 */
import { pino, type Logger } from 'pino';
import type { Config } from './config.ts';

export type { Logger };

export function createLogger(config: Config['log'], bindings: Record<string, unknown> = {}): Logger {
  const pretty = config.pretty ?? Boolean(process.stdout.isTTY);
  return pino({
    level: config.level,
    base: { pid: process.pid, ...bindings },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l' } } }
      : {}),
  });
}

/** A logger that writes nothing, for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
