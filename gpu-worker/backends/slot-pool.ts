/**
 * A fixed set of reusable slots (here: llama.cpp context sequences) lent out
 * one per request. When every slot is busy, callers wait in FIFO order; a
 * waiter whose AbortSignal fires leaves the queue and rejects with the
 * signal's reason, so a deadline never waits on a slot it will not use.
 */
import { FleetError } from '../../common/errors.ts';

interface Waiter<T> {
  resolve: (slot: T) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class SlotPool<T> {
  private readonly free: T[];
  private readonly waiters: Waiter<T>[] = [];
  private closed = false;

  constructor(slots: readonly T[]) {
    if (slots.length === 0) throw new FleetError('internal', 'a slot pool needs at least one slot');
    this.free = [...slots];
  }

  /** Slots not lent out right now. */
  get available(): number {
    return this.free.length;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  async acquire(signal: AbortSignal): Promise<T> {
    if (signal.aborted) throw signal.reason;
    if (this.closed) throw new FleetError('unavailable', 'the backend is closed');
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          // The seam rejects with the signal's reason, whatever the aborter chose.
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Hands a slot back: straight to the oldest waiter, else to the free list. */
  release(slot: T): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) {
      this.free.push(slot);
      return;
    }
    waiter.signal.removeEventListener('abort', waiter.onAbort);
    waiter.resolve(slot);
  }

  /** Rejects every waiter; later acquires fail with `unavailable`. */
  close(): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(new FleetError('unavailable', 'the backend is closed'));
    }
  }
}
