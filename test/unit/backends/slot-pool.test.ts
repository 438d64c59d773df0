import { describe, expect, it } from 'vitest';
import { SlotPool } from '../../../gpu-worker/backends/slot-pool.ts';

const live = (): AbortSignal => new AbortController().signal;

describe('SlotPool', () => {
  it('lends free slots, then queues callers in FIFO order', async () => {
    const pool = new SlotPool(['a']);
    const first = await pool.acquire(live());
    const order: string[] = [];
    const second = pool.acquire(live()).then((s) => order.push(`second:${s}`));
    const third = pool.acquire(live()).then((s) => order.push(`third:${s}`));
    expect(pool.waiting).toBe(2);
    pool.release(first);
    await second;
    pool.release('a');
    await third;
    expect(order).toEqual(['second:a', 'third:a']);
  });

  it('drops a waiter whose signal aborts, with its reason, and skips it on release', async () => {
    const pool = new SlotPool([1]);
    const slot = await pool.acquire(live());
    const ac = new AbortController();
    const waiting = pool.acquire(ac.signal);
    const reason = new Error('deadline');
    ac.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(pool.waiting).toBe(0);
    pool.release(slot);
    expect(pool.available).toBe(1);
  });

  it('rejects waiters and later callers with unavailable once closed', async () => {
    const pool = new SlotPool([1]);
    await pool.acquire(live());
    const waiting = pool.acquire(live());
    pool.close();
    await expect(waiting).rejects.toMatchObject({ code: 'unavailable' });
    await expect(pool.acquire(live())).rejects.toMatchObject({ code: 'unavailable' });
  });
});
