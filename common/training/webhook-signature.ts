/**
 * The completion webhook's signature. Each POST carries
 *   X-Interfleet-Signature: t=<UNIX seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 * A receiver recomputes v1 over the raw body it received, compares in
 * constant time, and refuses a `t` too far from its clock (a replay).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-interfleet-signature';
/** The job id, the same on every attempt: a receiver drops repeats by it. */
export const DELIVERY_HEADER = 'x-interfleet-delivery';
export const EVENT_HEADER = 'x-interfleet-event';
export const WEBHOOK_EVENT = 'training.job.ended';

export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  const v1 = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${v1}`;
}

/** Whether `header` signs `body` with `secret`, at most `toleranceS` seconds from `nowS`. */
export function verifyWebhook(secret: string, body: string, header: string, nowS: number, toleranceS = 300): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowS - t) > toleranceS || typeof parts.v1 !== 'string') return false;
  const expected = Buffer.from(signWebhook(secret, body, t).split('v1=')[1]!, 'hex');
  const given = Buffer.from(parts.v1, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
