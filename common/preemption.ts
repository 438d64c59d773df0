/**
 * The preemption protocol between the scheduler and the bulk lanes: "N
 * running chunks of pool P, yield now". The scheduler sets a token counter
 * and publishes a message on the pool's channel; each worker that hears it
 * claims tokens with DECR, one per chunk it will yield, and stops when the
 * counter goes below zero, so exactly N chunks yield fleet-wide however many
 * workers listen. Tokens expire: a worker that hears late, or a message that
 * finds fewer running chunks than tokens, leaves nothing behind to preempt
 * chunks that start later.
 */
import { z } from 'zod';
import type { RedisClient } from './redis.ts';

/** Tokens outlive a message by this much: long enough for every worker to hear it and claim. */
export const PREEMPT_TOKEN_TTL_MS = 5000;

/** The pool's token counter and channel (`{preempt.<pool>}`: one slot, of its own). */
export function preemptKeys(prefix: string, pool: string): { tokens: string; channel: string } {
  const base = `${prefix}:{preempt.${pool}}`;
  return { tokens: `${base}:tokens`, channel: `${base}:channel` };
}

export const preemptMessageSchema = z.object({
  pool: z.string().min(1),
  count: z.number().int().min(1),
  reason: z.string(),
  at: z.number().int(),
});
export type PreemptMessage = z.infer<typeof preemptMessageSchema>;

/** Asks `count` running chunks of `pool` to yield at their next record boundary (the scheduler's side). */
export async function requestPreemption(
  redis: RedisClient,
  prefix: string,
  pool: string,
  count: number,
  reason: string,
  now = Date.now(),
): Promise<void> {
  if (count < 1) return;
  const { tokens, channel } = preemptKeys(prefix, pool);
  const message: PreemptMessage = { pool, count, reason, at: now };
  // SET, not INCRBY: a new request replaces what an earlier one left unclaimed.
  await redis.set(tokens, count, 'PX', PREEMPT_TOKEN_TTL_MS);
  await redis.publish(channel, JSON.stringify(message));
}

/** DECR only an existing counter: a plain DECR after expiry would leave a -1 with no TTL behind. */
const CLAIM = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('DECR', KEYS[1])
`;

/** Claims one token (the worker's side): true when this worker should yield one more chunk. */
export async function claimPreemption(redis: RedisClient, prefix: string, pool: string): Promise<boolean> {
  return Number(await redis.eval(CLAIM, 1, preemptKeys(prefix, pool).tokens)) >= 0;
}
