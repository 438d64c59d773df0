/**
 * Pushes replies onto producer inboxes with as few round trips as the load
 * allows: while one push is in flight, further replies (token deltas, other
 * requests' results) queue up and leave together in the next one. Order per
 * inbox is preserved, so a request's deltas always precede its `done`.
 */
import type { Reply } from '../common/contracts/realtime.ts';
import type { RedisClient } from '../common/redis.ts';

interface Pending {
  messages: string[];
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

export class ReplyWriter {
  private readonly pending = new Map<string, Pending>();
  private readonly inFlight = new Set<string>();

  /**
   * @param inboxTtlMs refreshed on every push: the inbox of a producer replica
   *   that died disappears instead of growing forever.
   */
  constructor(
    private readonly redis: RedisClient,
    private readonly inboxTtlMs = 60_000,
  ) {}

  /** Queues a reply; resolves when Redis has it. */
  send(inbox: string, reply: Reply): Promise<void> {
    let batch = this.pending.get(inbox);
    if (!batch) {
      batch = { messages: [], waiters: [] };
      this.pending.set(inbox, batch);
    }
    batch.messages.push(JSON.stringify(reply));
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (!this.inFlight.has(inbox)) this.flush(inbox);
    return done;
  }

  private flush(inbox: string): void {
    const batch = this.pending.get(inbox);
    if (!batch) return;
    this.pending.delete(inbox);
    this.inFlight.add(inbox);
    this.redis
      .pipeline()
      .rpush(inbox, ...batch.messages)
      .pexpire(inbox, this.inboxTtlMs)
      .exec()
      .then(
        (results) => {
          const failed = results?.find(([err]) => err)?.[0];
          if (failed) for (const w of batch.waiters) w.reject(failed);
          else for (const w of batch.waiters) w.resolve();
        },
        (err: unknown) => {
          for (const w of batch.waiters) w.reject(err);
        },
      )
      .finally(() => {
        this.inFlight.delete(inbox);
        if (this.pending.has(inbox)) this.flush(inbox);
      });
  }
}
