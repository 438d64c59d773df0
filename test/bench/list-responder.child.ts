/**
 * The floor's responder: BRPOP a request, then LPUSH its reply and BRPOP the
 * next request in one write. Env: BENCH_REDIS_URL, BENCH_PREFIX. Stops on
 * SIGTERM or when its parent goes away (each BRPOP blocks at most 1 s).
 */
import { Redis } from 'ioredis';
import { requestKey } from './list-floor.ts';

const redis = new Redis(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
const key = requestKey(process.env.BENCH_PREFIX ?? 'bench');
let running = true;
process.on('SIGTERM', () => (running = false));
process.on('disconnect', () => (running = false));

await redis.ping();
process.send?.({ type: 'ready' });

let next = await redis.brpop(key, 1);
while (running) {
  if (next === null) {
    next = await redis.brpop(key, 1);
    continue;
  }
  const raw = next[1];
  const nl = raw.indexOf('\n');
  const results = await redis
    .pipeline()
    .lpush(raw.slice(0, nl), raw.slice(nl + 1))
    .brpop(key, 1)
    .exec();
  next = (results?.[1]?.[1] as [string, string] | null | undefined) ?? null;
}
redis.disconnect();
process.exit(0);
