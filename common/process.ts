/**
 * Process lifecycle shared by every entry point: on SIGTERM or SIGINT, run
 * the role's graceful close once; a second signal exits at once.
 */
import type { Logger } from './logger.ts';

export function runUntilSignal(logger: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * Waits for `work` at most `ms`. Shutdown steps use it so that an outage
 * (a Redis that never answers) cannot turn a graceful close into a hang.
 * Resolves true when the work finished, false when it timed out or failed.
 */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([
      work.then(
        () => true as const,
        () => false as const,
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a process with this pid exists (signal 0; EPERM: it exists but is not ours to signal). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
