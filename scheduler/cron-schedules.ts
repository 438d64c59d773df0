/**
 * Cron triggers as BullMQ job schedulers on the batch control queue: one per
 * `config.batch.schedules` entry, id = the schedule's name. BullMQ keeps the
 * schedule in Redis and adds a `cron` job at each fire time, whoever leads, so
 * the leader only has to make the stored schedulers match its config: upsert
 * every configured one, remove the others. It does so on each leadership
 * acquisition (config only changes with a restart, which is one).
 * The producer's control worker turns each `cron` job into a batch.
 */
import type { Queue } from 'bullmq';
import type { BatchSchedule } from '../common/config.ts';
import { controlJobSchema } from '../common/contracts/batch.ts';
import type { Logger } from '../common/logger.ts';

/** The jobs a scheduler adds: a failed launch is retried a few times, then kept for the board. */
const cronJobOpts = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 5000 },
  removeOnComplete: { age: 86_400, count: 1000 },
  removeOnFail: { age: 7 * 86_400 },
};

export interface CronSyncResult {
  upserted: string[];
  removed: string[];
  /** Schedules BullMQ refused (a bad pattern or time zone), with why. */
  failed: { name: string; error: string }[];
}

/** Makes the job schedulers on `queue` match `schedules`. Throws on Redis errors; per-schedule refusals are returned. */
export async function syncCronSchedules(
  queue: Queue,
  schedules: readonly BatchSchedule[],
  logger: Logger,
): Promise<CronSyncResult> {
  const result: CronSyncResult = { upserted: [], removed: [], failed: [] };
  for (const schedule of schedules) {
    const data = controlJobSchema.parse({ kind: 'cron', schedule: schedule.name });
    try {
      await queue.upsertJobScheduler(
        schedule.name,
        { pattern: schedule.cron, tz: schedule.tz },
        { name: 'cron', data, opts: cronJobOpts },
      );
      result.upserted.push(schedule.name);
    } catch (err) {
      // cron-parser rejects the pattern or zone synchronously inside BullMQ; a Redis failure throws the same way,
      // so every failure is reported and the caller retries the whole sync later.
      result.failed.push({ name: schedule.name, error: err instanceof Error ? err.message : String(err) });
    }
  }
  const wanted = new Set(schedules.map((s) => s.name));
  for (const existing of await queue.getJobSchedulers(0, -1)) {
    if (wanted.has(existing.key)) continue;
    await queue.removeJobScheduler(existing.key);
    result.removed.push(existing.key);
  }
  if (result.upserted.length + result.removed.length > 0) {
    logger.info({ upserted: result.upserted, removed: result.removed }, 'cron schedules synced');
  }
  for (const f of result.failed) logger.error({ schedule: f.name, error: f.error }, 'cron schedule refused');
  return result;
}
