/**
 * Bulk throughput of one setup, from a BullMQ queue's events: each bulk job's
 * last `active` and its `completed` (whose return value says how many records
 * it completed) give the interval over which its output tokens were made.
 * Tokens inside a measurement window are pro-rated by the overlap of that
 * interval with the window (a chunk's tokens come out at a nearly steady pace:
 * its records run side by side), so chunks much longer than the window's
 * edges do not make the count jump. A chunk that was preempted and ran again
 * counts from its last start; the work of an abandoned attempt counts
 * nothing (it produced nothing the batch keeps).
 */
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';

export interface ChunkSpan {
  start: number;
  end: number;
  tokens: number;
}

/** Output tokens made inside [from, to) by the chunks, pro-rated (pure). */
export function tokensInWindow(spans: readonly ChunkSpan[], from: number, to: number): number {
  let tokens = 0;
  for (const s of spans) {
    const overlap = Math.min(s.end, to) - Math.max(s.start, from);
    if (overlap <= 0) continue;
    tokens += s.end > s.start ? (s.tokens * overlap) / (s.end - s.start) : s.tokens;
  }
  return tokens;
}

export class BulkMeter {
  private readonly events: QueueEvents;
  private readonly connection: Redis;
  private readonly started = new Map<string, number>();
  readonly spans: ChunkSpan[] = [];
  /** Records the jobs reported as completed (for a sanity check against the backlog). */
  records = 0;
  firstActiveAt: number | undefined;

  private constructor(
    redisUrl: string,
    queue: string,
    prefix: string,
    /** Which jobs are bulk ones, and the records a completed one reports. */
    private readonly recordsOf: (jobId: string, returnvalue: unknown) => number | undefined,
    private readonly outputTokens: number,
  ) {
    this.connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
    this.connection.on('error', () => undefined);
    this.events = new QueueEvents(queue, { connection: this.connection, prefix });
    this.events.on('active', ({ jobId }) => {
      const now = performance.now();
      this.started.set(jobId, now);
      this.firstActiveAt ??= now;
    });
    this.events.on('completed', ({ jobId, returnvalue }) => {
      const records = this.recordsOf(jobId, returnvalue);
      const start = this.started.get(jobId);
      this.started.delete(jobId);
      if (records === undefined || start === undefined) return;
      this.records += records;
      this.spans.push({ start, end: performance.now(), tokens: records * this.outputTokens });
    });
  }

  static async start(
    redisUrl: string,
    queue: string,
    prefix: string,
    recordsOf: (jobId: string, returnvalue: unknown) => number | undefined,
    outputTokens: number,
  ): Promise<BulkMeter> {
    const meter = new BulkMeter(redisUrl, queue, prefix, recordsOf, outputTokens);
    await meter.events.waitUntilReady();
    return meter;
  }

  /** Bulk jobs started at or before `t` and not yet completed (or abandoned). */
  runningSince(t: number): number {
    let n = 0;
    for (const s of this.started.values()) if (s <= t) n++;
    return n;
  }

  async close(): Promise<void> {
    await this.events.close();
    this.connection.disconnect();
  }
}
