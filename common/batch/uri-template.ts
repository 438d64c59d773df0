/**
 * URI templates of cron-launched batches: a schedule names its input as, for
 * example, `gs://events/{date-1d}/` and each firing fills in its own date, so
 * the 02:00 run of 2026-11-28 reads `gs://events/2026-11-27/`.
 *
 * Placeholders: `{date}` (YYYY-MM-DD), `{yyyy}`, `{mm}`, `{dd}`, `{hh}`, each
 * with an optional offset `±N d|h` applied first (`{date-1d}`, `{hh+2h}`).
 * Dates are the firing time's wall-clock date in the schedule's time zone.
 * Pure: the same template and instant always give the same URI.
 */

const placeholderRe = /\{(date|yyyy|mm|dd|hh)(?:([+-])(\d{1,4})([dh]))?\}/g;
const anyBraceRe = /[{}]/;

export class UriTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UriTemplateError';
  }
}

/** Wall-clock parts of an instant in a time zone. */
function wallClock(at: Date, tz: string): { yyyy: string; mm: string; dd: string; hh: string } {
  let parts: Intl.DateTimeFormatPart[];
  try {
    parts = new Intl.DateTimeFormat('en-CA', {
      timeZone: tz,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      hourCycle: 'h23',
    }).formatToParts(at);
  } catch {
    throw new UriTemplateError(`unknown time zone ${JSON.stringify(tz)}`);
  }
  const get = (type: string): string => parts.find((p) => p.type === type)!.value;
  return { yyyy: get('year'), mm: get('month'), dd: get('day'), hh: get('hour') };
}

/** Fills a template's placeholders for the instant `at` in time zone `tz` (default UTC). */
export function expandUriTemplate(template: string, at: Date, tz = 'UTC'): string {
  const out = template.replace(placeholderRe, (_m, field: string, sign?: string, n?: string, unit?: string) => {
    let t = at.getTime();
    if (sign !== undefined) {
      const step = unit === 'd' ? 86_400_000 : 3_600_000;
      t += (sign === '-' ? -1 : 1) * Number(n) * step;
    }
    const w = wallClock(new Date(t), tz);
    return field === 'date' ? `${w.yyyy}-${w.mm}-${w.dd}` : w[field as keyof typeof w];
  });
  if (anyBraceRe.test(out)) {
    throw new UriTemplateError(
      `template ${JSON.stringify(template)} has an unknown placeholder; use {date}, {yyyy}, {mm}, {dd}, {hh}, optionally with ±Nd or ±Nh`,
    );
  }
  return out;
}
