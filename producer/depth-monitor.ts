/**
 * Samples each pool's real-time queue depth every `everyMs`: admission reads
 * the sample instead of asking Redis on every request, and /metrics reports it.
 */
import type { Queue } from 'bullmq';
import type { Logger } from '../common/logger.ts';

interface PoolDepth {
  waiting: number;
  active: number;
  addedSinceSample: number;
}

export class DepthMonitor {
  private readonly depths = new Map<string, PoolDepth>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly queues: ReadonlyMap<string, Queue>,
    private readonly everyMs: number,
    private readonly logger: Logger,
  ) {
    for (const pool of queues.keys()) this.depths.set(pool, { waiting: 0, active: 0, addedSinceSample: 0 });
  }

  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  sample(pool: string): { sampledWaiting: number; addedSinceSample: number } {
    const d = this.depths.get(pool);
    return { sampledWaiting: d?.waiting ?? 0, addedSinceSample: d?.addedSinceSample ?? 0 };
  }

  counts(pool: string): { waiting: number; active: number } {
    const d = this.depths.get(pool);
    return { waiting: d?.waiting ?? 0, active: d?.active ?? 0 };
  }

  /** Counts requests this replica enqueued since the last sample (`-1` takes one back). */
  added(pool: string, n = 1): void {
    const d = this.depths.get(pool);
    if (d) d.addedSinceSample += n;
  }

  async refresh(): Promise<void> {
    await Promise.all(
      [...this.queues].map(async ([pool, queue]) => {
        // Adds made while this sample is in flight may or may not be in it:
        // keep counting them (over-counting errs toward 429, never past the limit).
        const addedBefore = this.depths.get(pool)?.addedSinceSample ?? 0;
        try {
          const counts = await queue.getJobCounts('waiting', 'prioritized', 'active');
          const addedSinceSample = (this.depths.get(pool)?.addedSinceSample ?? 0) - addedBefore;
          this.depths.set(pool, {
            waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
            active: counts.active ?? 0,
            addedSinceSample,
          });
        } catch (err) {
          this.logger.debug({ err, pool }, 'queue depth sample failed');
        }
      }),
    );
  }
}
