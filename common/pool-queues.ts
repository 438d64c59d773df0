/**
 * BullMQ Queue handles of one kind of work, one per pool, made on first use
 * and closed together: what a loop or a route that reaches many pools' queues
 * keeps instead of a map of its own.
 */
import { Queue } from 'bullmq';
import type { RedisClient } from './redis.ts';
import { queueName, type QueueKind } from './topology.ts';

export class PoolQueues {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly kind: QueueKind,
    private readonly connection: RedisClient,
    private readonly prefix: string,
    /** Where a queue's connection errors go (a Queue without an 'error' listener throws them). */
    private readonly onError?: (err: Error) => void,
  ) {}

  /** The pool's queue of this kind. */
  get(pool: string): Queue {
    let queue = this.queues.get(pool);
    if (!queue) {
      queue = new Queue(queueName(this.kind, pool), { connection: this.connection, prefix: this.prefix });
      if (this.onError) queue.on('error', this.onError);
      this.queues.set(pool, queue);
    }
    return queue;
  }

  /** Closes every queue made so far; a later get() makes a new one. */
  async close(): Promise<void> {
    const queues = [...this.queues.values()];
    this.queues.clear();
    await Promise.all(queues.map((q) => q.close()));
  }
}
