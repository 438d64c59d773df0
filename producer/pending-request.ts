/**
 * One accepted real-time request as the HTTP layer sees it: a stream of
 * replies (deltas, then done) that ends exactly once: done, an error from the
 * worker, the deadline, or the caller going away. Whatever ends it, `onEnd`
 * runs once so the service can unregister, remove the job and cancel it.
 */
import type { DoneReply, Reply } from '../common/contracts/realtime.ts';
import { FleetError } from '../common/errors.ts';

export type EndReason = 'done' | 'error' | 'deadline' | 'aborted';

export class PendingRequest {
  private readonly buffer: Reply[] = [];
  private wake: (() => void) | undefined;
  private failure: FleetError | undefined;
  private ended = false;

  constructor(
    readonly requestId: string,
    readonly pool: string,
    readonly deadlineAt: number,
    private readonly onEnd: (reason: EndReason) => void,
  ) {}

  /** Called by the inbox with each reply for this request. */
  push(reply: Reply): void {
    if (this.ended) return;
    if (reply.k === 'error') {
      this.end('error', new FleetError(reply.code, reply.message));
      return;
    }
    this.buffer.push(reply);
    if (reply.k === 'done') this.end('done');
    this.wake?.();
  }

  /** Ends the request from outside (deadline timer, caller gone, shutdown). */
  fail(reason: Exclude<EndReason, 'done'>, err: FleetError): void {
    this.end(reason, err);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  private end(reason: EndReason, err?: FleetError): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = err;
    this.onEnd(reason);
    this.wake?.();
  }

  /** Yields deltas and finally the done reply; throws the FleetError that ended it otherwise. */
  async *replies(): AsyncGenerator<Exclude<Reply, { k: 'error' }>> {
    for (;;) {
      const next = this.buffer.shift();
      if (next) {
        if (next.k === 'error') continue;
        yield next;
        if (next.k === 'done') return;
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Waits for the final result, ignoring deltas. */
  async result(): Promise<DoneReply> {
    for await (const reply of this.replies()) if (reply.k === 'done') return reply;
    throw this.failure ?? new FleetError('internal', 'request ended without a result');
  }
}
