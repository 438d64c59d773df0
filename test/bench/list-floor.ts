/**
 * The floor: a plain Redis list request/reply without BullMQ. The caller
 * sends LPUSH (request, naming its reply key) and BRPOP (its reply key) in one
 * write on one connection; the responder (`list-responder.child.ts`) answers
 * with LPUSH (reply) and BRPOP (next request), also in one write. Each side
 * costs one network write per request: nothing can do fewer.
 */
import { Redis } from 'ioredis';
import type { Call } from './load.ts';

export function requestKey(prefix: string): string {
  return `${prefix}:floor:req`;
}

export interface ListCaller {
  call: Call;
  close(): void;
}

/** One connection per caller slot; `concurrency` slots. */
export function startListCaller(redisUrl: string, prefix: string, concurrency: number, timeoutS = 5): ListCaller {
  const free = Array.from({ length: concurrency }, (_, i) => ({
    redis: new Redis(redisUrl, { maxRetriesPerRequest: null }),
    replyKey: `${prefix}:floor:reply:${i}`,
  }));
  const all = [...free];
  const body = 'hi';
  return {
    async call() {
      const slot = free.pop();
      if (!slot) throw new Error('more concurrent calls than caller slots');
      try {
        const results = await slot.redis
          .pipeline()
          .lpush(requestKey(prefix), `${slot.replyKey}\n${body}`)
          .brpop(slot.replyKey, timeoutS)
          .exec();
        const popped = results?.[1]?.[1];
        if (!popped) throw new Error('no reply from the list responder');
      } finally {
        free.push(slot);
      }
    },
    close() {
      for (const s of all) s.redis.disconnect();
    },
  };
}
