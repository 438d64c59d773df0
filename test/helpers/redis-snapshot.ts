/**
 * What a key prefix holds, to show that something changed nothing: every key
 * with its type and size, and the job counts of every BullMQ queue under the
 * prefix (found by their `meta` keys).
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

const sizeCommand: Record<string, string> = {
  string: 'strlen',
  list: 'llen',
  hash: 'hlen',
  set: 'scard',
  zset: 'zcard',
  stream: 'xlen',
};

/** Keys a live role rewrites on its own (BullMQ's stalled-check timestamp), left out of the comparison. */
const volatile = /:stalled-check$/;

/** key → "type size", for every key under `prefix:`. */
export async function snapshotPrefix(redis: Redis, prefix: string): Promise<Map<string, string>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, page] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...page.filter((k) => !volatile.test(k)));
  } while (cursor !== '0');
  const out = new Map<string, string>();
  for (const key of keys.sort()) {
    const type = await redis.type(key);
    const command = sizeCommand[type];
    const size = command ? await redis.call(command, key) : '?';
    out.set(key, `${type} ${String(size)}`);
  }
  return out;
}

/** One line per key added, removed or resized between two snapshots. */
export function diffSnapshots(before: Map<string, string>, after: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [key, was] of before)
    if (after.get(key) !== was) lines.push(`${key}: ${was} → ${after.get(key) ?? 'gone'}`);
  for (const [key, now] of after) if (!before.has(key)) lines.push(`${key}: new (${now})`);
  return lines;
}

/** Every BullMQ queue under the prefix with its total jobs in any state. */
export async function queueJobTotals(redis: Redis, prefix: string): Promise<Map<string, number>> {
  const metas = await redis.keys(`${prefix}:*:meta`);
  const totals = new Map<string, number>();
  for (const meta of metas) {
    const name = meta.slice(prefix.length + 1, -':meta'.length);
    const queue = new Queue(name, { connection: redis, prefix });
    try {
      const counts = await queue.getJobCounts();
      totals.set(
        name,
        Object.values(counts).reduce((a, b) => a + b, 0),
      );
    } finally {
      await queue.close();
    }
  }
  return totals;
}
