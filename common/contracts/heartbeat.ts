/**
 * A worker's heartbeat: what the producer's /readyz, the scheduler and
 * `/v1/models` know about the fleet. Stored as one JSON value per worker in
 * the pool's workers hash; `expiresAt` makes a dead worker disappear.
 */
import { z } from 'zod';
import { windowBoundsMs } from '../latency-window.ts';

export const laneNames = ['realtime', 'bulk', 'training'] as const;

/** Bucket counts over common/latency-window.ts's bounds (one more slot: overflow). */
const windowCounts = z.array(z.number().int().min(0)).length(windowBoundsMs.length + 1);

/**
 * The worker's real-time latencies over the last `windowMs`, as histograms the
 * scheduler adds up per pool (its bulk-budget controller steers on them).
 * `firstToken` is what the caller sees: from enqueue to the first token (or
 * the result, for tasks that do not stream); `queueWait`, enqueue to start.
 */
export const realtimeWindowSchema = z.object({
  windowMs: z.number().int().positive(),
  firstToken: windowCounts,
  queueWait: windowCounts,
  /**
   * How long the oldest running request has waited for its first token (ms since enqueue; 0 when
   * none): a request too slow to finish within the window is in neither histogram, yet is the
   * clearest sign of trouble.
   */
  oldestPendingMs: z.number().min(0).default(0),
});
export type RealtimeWindow = z.infer<typeof realtimeWindowSchema>;

/**
 * What the worker did over its last `windowMs`, in work units (a chat's prompt plus completion
 * tokens; 1 per request of other tasks): the autoscaler's measured capacity comes from here, not
 * from a constant. `full` is the time the engine was full (a bulk chunk running keeps it so) and the
 * units done in that time: a replica's throughput at capacity.
 */
export const workWindowSchema = z.object({
  windowMs: z.number().int().positive(),
  realtime: z.object({ requests: z.number().min(0), units: z.number().min(0) }),
  bulk: z.object({ records: z.number().min(0), units: z.number().min(0) }),
  full: z.object({ ms: z.number().min(0), units: z.number().min(0) }),
});
export type WorkWindow = z.infer<typeof workWindowSchema>;

export const heartbeatSchema = z.object({
  workerId: z.string(),
  pool: z.string(),
  host: z.string(),
  pid: z.number().int(),
  backend: z.string(),
  lanes: z.array(z.object({ name: z.enum(laneNames), concurrency: z.number().int(), inFlight: z.number().int() })),
  state: z.enum(['starting', 'ready', 'draining']),
  /** Absent from workers without a real-time lane (and from older workers). */
  realtime: realtimeWindowSchema.optional(),
  /** Absent from workers older than the field (the autoscaler then counts requests as units). */
  work: workWindowSchema.optional(),
  startedAt: z.number().int(),
  seenAt: z.number().int(),
  expiresAt: z.number().int(),
});
export type Heartbeat = z.infer<typeof heartbeatSchema>;

/** Live workers of a pool, from the raw hash; dead and unreadable entries are dropped. */
export function liveWorkers(raw: Record<string, string>, now: number): Heartbeat[] {
  const live: Heartbeat[] = [];
  for (const value of Object.values(raw)) {
    let json: unknown;
    try {
      json = JSON.parse(value);
    } catch {
      continue;
    }
    const parsed = heartbeatSchema.safeParse(json);
    if (parsed.success && parsed.data.expiresAt > now) live.push(parsed.data);
  }
  return live;
}

/** Ids of the entries that are dead or unreadable: the scheduler deletes them. */
export function expiredWorkerIds(raw: Record<string, string>, now: number): string[] {
  const liveIds = new Set(liveWorkers(raw, now).map((h) => h.workerId));
  return Object.keys(raw).filter((id) => !liveIds.has(id));
}
