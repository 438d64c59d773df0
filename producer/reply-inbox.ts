/**
 * The producer replica's reply inbox: one Redis list that every worker pushes
 * this replica's replies onto, drained by a single blocking reader (BLMPOP,
 * up to `batch` replies a call) and handed to whoever waits for each request.
 * One connection and no polling, however many requests are in flight.
 */
import { replySchema, type Reply } from '../common/contracts/realtime.ts';
import type { Logger } from '../common/logger.ts';
import { settleWithin } from '../common/process.ts';
import type { RedisClient } from '../common/redis.ts';

export type ReplyHandler = (reply: Reply) => void;

export class ReplyInbox {
  private readonly handlers = new Map<string, ReplyHandler>();
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    readonly key: string,
    private readonly logger: Logger,
    private readonly batch = 512,
    /** How long one BLMPOP blocks; bounds how long close() waits. */
    private readonly blockSeconds = 1,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.read();
  }

  /** Routes replies for `requestId` to `handler` until `unregister`. */
  register(requestId: string, handler: ReplyHandler): void {
    this.handlers.set(requestId, handler);
  }

  unregister(requestId: string): void {
    this.handlers.delete(requestId);
  }

  get waiting(): number {
    return this.handlers.size;
  }

  /** Stops reading and closes the inbox's connection (it owns it). Call after the drain. */
  async close(): Promise<void> {
    this.running = false;
    // Interrupts the BLMPOP in progress instead of waiting out its block time.
    this.redis.disconnect();
    // While Redis is unreachable the pending BLMPOP sits in ioredis' offline
    // queue and is never settled by disconnect(): do not wait on it for long.
    if (this.loop) await settleWithin(this.loop, 1000);
  }

  private async read(): Promise<void> {
    while (this.running) {
      let popped: [string, string[]] | null;
      try {
        popped = await this.redis.blmpop(this.blockSeconds, 1, this.key, 'LEFT', 'COUNT', this.batch);
      } catch (err) {
        if (!this.running) break;
        this.logger.warn({ err }, 'reply inbox read failed; retrying');
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (popped) for (const raw of popped[1]) this.dispatch(raw);
    }
  }

  private dispatch(raw: string): void {
    let reply: Reply;
    try {
      reply = replySchema.parse(JSON.parse(raw));
    } catch (err) {
      this.logger.error({ err, raw: raw.slice(0, 200) }, 'unreadable reply dropped');
      return;
    }
    // No handler: the request already ended (deadline, caller gone); its late reply is moot.
    this.handlers.get(reply.i)?.(reply);
  }
}
