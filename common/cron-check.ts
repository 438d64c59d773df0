/**
 * The check every cron setting of the config shares (batch schedules,
 * autoscaling floors): the zone must be an IANA zone and the pattern one
 * cron-parser reads in it, reported on the field's own path.
 */
import { CronExpressionParser } from 'cron-parser';
import type { z } from 'zod';

/**
 * Adds an issue at `tz` or `cron` when either is unusable (a bad zone hides the pattern's check).
 * Returns whether the zone is usable, for checks that need it next.
 */
export function checkCron(value: { cron: string; tz: string }, ctx: z.RefinementCtx): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value.tz });
  } catch {
    ctx.addIssue({ code: 'custom', path: ['tz'], message: `"${value.tz}" is not an IANA time zone` });
    return false;
  }
  try {
    CronExpressionParser.parse(value.cron, { tz: value.tz });
  } catch (err) {
    ctx.addIssue({
      code: 'custom',
      path: ['cron'],
      message: `"${value.cron}" is not a cron pattern: ${(err as Error).message}`,
    });
  }
  return true;
}
