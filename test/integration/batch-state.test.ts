/**
 * The batch hash in Redis (common/batch/batch-state.ts): CAS transitions, the
 * fenced cursor, once-only settlement, the done bitmap and the list index.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, newBatchId, type BatchSpec } from '../../common/batch/batch-state.ts';
import { batchSpec } from '../helpers/batch-scheduler.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

const config = testConfig();
const prefix = config.redis.prefix;
let redis: Redis;
let store: BatchStore;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
  store = new BatchStore(redis, prefix);
});
afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

let clock = 1_700_000_000_000;
const spec = (overrides: Partial<BatchSpec> = {}): BatchSpec => batchSpec(clock++, overrides);

/** A planned, in_progress batch of `chunks` chunks. */
async function running(chunks: number): Promise<string> {
  const s = spec();
  await store.create(s);
  await store.transition(s.id, ['validating'], 'in_progress', { planned: 1, chunks, in_progress_at: 1 });
  return s.id;
}

describe('BatchStore', () => {
  it('creates a batch once, in validating, listed as open', async () => {
    const s = spec();
    await store.create(s);
    await expect(store.create(s)).rejects.toThrow(/already exists/);
    const b = await store.get(s.id);
    expect(b).toMatchObject({ spec: s, status: 'validating', stop: null, planned: false });
    expect(await store.openIds()).toContain(s.id);
    expect(await store.get(newBatchId(0))).toBeUndefined();
  });

  it('never shows a batch half-created: a read sent while create runs sees none or a whole one', async () => {
    // Sent on one connection in this order, the read used to land between the spec and its
    // status (two submits racing on one Idempotency-Key) and failed to decode: a 500.
    for (let i = 0; i < 20; i++) {
      const s = spec();
      const [, seen] = await Promise.all([store.create(s), store.get(s.id)]);
      expect(seen === undefined || seen.status === 'validating').toBe(true);
    }
  });

  it('moves the status by compare-and-set, with its fields', async () => {
    const s = spec();
    await store.create(s);
    expect(await store.transition(s.id, ['in_progress'], 'finalizing')).toEqual({ moved: false, status: 'validating' });
    expect(
      await store.transition(s.id, ['validating', 'in_progress'], 'in_progress', { planned: 1, chunks: 4 }),
    ).toEqual({ moved: true, status: 'validating' });
    const b = (await store.get(s.id))!;
    expect(b).toMatchObject({ status: 'in_progress', planned: true });
    expect(b.counters.chunks).toBe(4);
    expect(await store.transition(s.id, ['in_progress'], 'cancelling', { stop: 'cancelled' })).toMatchObject({
      moved: true,
    });
    expect((await store.get(s.id))!.stop).toBe('cancelled');
    expect(await store.transition(newBatchId(0), ['validating'], 'failed')).toEqual({
      moved: false,
      status: undefined,
    });
  });

  it('advances the cursor only from where it is, only while running, and never for an older epoch', async () => {
    const id = await running(10);
    expect(await store.advanceCursor(id, 3, 0, 4, 400)).toBe('advanced');
    expect(await store.advanceCursor(id, 3, 0, 4, 400)).toBe('conflict'); // the cursor moved on
    expect(await store.advanceCursor(id, 2, 4, 6, 600)).toBe('stale');
    expect(await store.advanceCursor(id, 4, 4, 6, 600)).toBe('advanced'); // a newer leader
    expect(await store.advanceCursor(id, 3, 6, 8, 800)).toBe('stale'); // the old one is fenced off now
    let b = (await store.get(id))!;
    expect(b.counters).toMatchObject({ cursor: 6, plan_byte: 600, admitted: 6 });

    await store.transition(id, ['in_progress'], 'cancelling', { stop: 'cancelled' });
    expect(await store.advanceCursor(id, 4, 6, 8, 800)).toBe('conflict');
    b = (await store.get(id))!;
    expect(b.counters).toMatchObject({ cursor: 6, admitted: 6 });
  });

  it('settles each chunk once, whatever the number of calls', async () => {
    const id = await running(3);
    expect(await store.settleChunk(id, 0, { outcome: 'done', completed: 5, failed: 2 })).toBe('settled');
    expect(await store.settleChunk(id, 0, { outcome: 'done', completed: 5, failed: 2 })).toBe('already');
    expect(await store.settleChunk(id, 0, { outcome: 'failed', reason: 'late' })).toBe('already');
    expect(await store.settleChunk(id, 1, { outcome: 'skipped' })).toBe('settled');
    expect(await store.settleChunk(id, 2, { outcome: 'failed', reason: 'backend down' })).toBe('settled');
    expect(await store.settleChunk(id, 2, { outcome: 'done', completed: 1, failed: 0 })).toBe('already');
    const b = (await store.get(id))!;
    expect(b.counters).toMatchObject({ settled: 3, completed: 5, failed: 2 });
    expect(await store.chunkErrors(id)).toEqual(new Map([[2, 'backend down']]));
    const done = await store.doneChunks(id);
    expect([0, 1, 2].map(done)).toEqual([true, false, false]);
    expect(await store.settleChunk(newBatchId(0), 0, { outcome: 'skipped' })).toBe('gone');
  });

  it('decodes the done bitmap at byte and bit boundaries', async () => {
    const id = await running(2000);
    const indexes = [0, 7, 8, 1000];
    for (const i of indexes) await store.settleChunk(id, i, { outcome: 'done', completed: 1, failed: 0 });
    await store.settleChunk(id, 9, { outcome: 'skipped' });
    const done = await store.doneChunks(id);
    for (const i of indexes) expect(done(i), `chunk ${i}`).toBe(true);
    for (const i of [1, 6, 9, 15, 999, 1001, 1999, 50_000]) expect(done(i), `chunk ${i}`).toBe(false);
    expect((await store.doneChunks(newBatchId(0)))(0)).toBe(false);
  });

  it('reads several batches in one call and drops missing ones', async () => {
    const a = await running(1);
    const b = await running(2);
    const many = await store.getMany([a, newBatchId(0), b]);
    expect(many.map((x) => [x.spec.id, x.counters.chunks])).toEqual([
      [a, 1],
      [b, 2],
    ]);
    expect(await store.getMany([])).toEqual([]);
  });

  it('closes a batch out of the open index but keeps it listed', async () => {
    const id = await running(1);
    await store.close(id);
    expect(await store.openIds()).not.toContain(id);
    expect((await store.listIds(1000)).ids).toContain(id);
  });

  it('lists ids newest first, a page at a time', async () => {
    const own = new BatchStore(redis, `${prefix}:list`);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const s = spec();
      ids.push(s.id);
      await own.create(s);
    }
    const newest = [...ids].reverse();
    const p1 = await own.listIds(2);
    expect(p1).toEqual({ ids: newest.slice(0, 2), hasMore: true });
    const p2 = await own.listIds(2, p1.ids.at(-1));
    expect(p2).toEqual({ ids: newest.slice(2, 4), hasMore: true });
    const p3 = await own.listIds(2, p2.ids.at(-1));
    expect(p3).toEqual({ ids: newest.slice(4), hasMore: false });
    expect(await own.openIds()).toEqual(ids); // oldest first
  });
});
