/**
 * Bulk throughput of one setup, from a BullMQ queue's events: each bulk job's
 * last `active`, its `progress` reports (`{ completed }`: records done so
 * far) and its `completed` (whose return value says how many records it
 * completed) cut its run into intervals, each with the records finished in
 * it. Tokens inside a measurement window are pro-rated by the overlap of each
 * interval with the window, so chunks much longer than the window's edges do
 * not make the count jump. Without progress reports a job is one interval,
 * which is exact enough for short chunks but not for long ones: with a whole
 * backlog in the engine at once ((a), (b)) a chunk runs for minutes, most of
 * its records ending late, so the plain-BullMQ harness reports progress per
 * record. A chunk that was preempted and ran again counts from its last
 * start; the work of an abandoned attempt counts nothing (it produced nothing
 * the batch keeps).
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
  /** Per running job: when its current interval began and the records reported before it. */
  private readonly started = new Map<string, { at: number; reported: number; firstAt: number }>();
  readonly spans: ChunkSpan[] = [];
  /** Intervals of jobs still running: kept only when the job completes. */
  private readonly pending = new Map<string, ChunkSpan[]>();
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
      // A new attempt: what an abandoned one reported is dropped with it.
      this.pending.delete(jobId);
      this.started.set(jobId, { at: now, reported: 0, firstAt: now });
      this.firstActiveAt ??= now;
    });
    this.events.on('progress', ({ jobId, data }) => {
      const run = this.started.get(jobId);
      const completed = (data as { completed?: unknown } | null)?.completed;
      if (run === undefined || typeof completed !== 'number' || completed <= run.reported) return;
      const now = performance.now();
      const spans = this.pending.get(jobId) ?? [];
      spans.push({ start: run.at, end: now, tokens: (completed - run.reported) * this.outputTokens });
      this.pending.set(jobId, spans);
      run.at = now;
      run.reported = completed;
    });
    this.events.on('completed', ({ jobId, returnvalue }) => {
      const records = this.recordsOf(jobId, returnvalue);
      const run = this.started.get(jobId);
      this.started.delete(jobId);
      const spans = this.pending.get(jobId) ?? [];
      this.pending.delete(jobId);
      if (records === undefined || run === undefined) return;
      this.records += records;
      this.spans.push(...spans);
      if (records > run.reported)
        this.spans.push({
          start: run.at,
          end: performance.now(),
          tokens: (records - run.reported) * this.outputTokens,
        });
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
    for (const s of this.started.values()) if (s.firstAt <= t) n++;
    return n;
  }

  async close(): Promise<void> {
    await this.events.close();
    this.connection.disconnect();
  }
}
