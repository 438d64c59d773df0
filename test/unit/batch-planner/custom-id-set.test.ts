import { describe, expect, it } from 'vitest';
import { CustomIdSet, hash64 } from '../../../producer/batch/custom-id-set.ts';

describe('CustomIdSet', () => {
  it('tells a repeated id from a new one', () => {
    const set = new CustomIdSet();
    expect(set.add('a')).toBe(true);
    expect(set.add('b')).toBe(true);
    expect(set.add('a')).toBe(false);
    expect(set.has('b')).toBe(true);
    expect(set.has('c')).toBe(false);
    expect(set.size).toBe(2);
  });

  it('keeps every id across many doublings, with no false duplicate over a million similar ids', () => {
    const set = new CustomIdSet();
    const n = 1_000_000;
    let falseDuplicates = 0;
    for (let i = 0; i < n; i++) if (!set.add(`request-${i}`)) falseDuplicates++;
    expect(falseDuplicates).toBe(0);
    expect(set.size).toBe(n);
    for (let i = 0; i < n; i += 997) expect(set.add(`request-${i}`)).toBe(false);
    expect(set.has(`request-${n}`)).toBe(false);
    // 8 bytes a slot, at most 3/4 full: 2^21 slots for a million ids.
    expect(set.bytes).toBe(2 ** 21 * 8);
    expect(set.bytes / n).toBeLessThan(17);
  });

  it('presizes with initialCapacity', () => {
    const set = new CustomIdSet({ initialCapacity: 3000 });
    expect(set.bytes).toBe(4096 * 8);
    for (let i = 0; i < 3000; i++) set.add(String(i));
    expect(set.bytes).toBe(4096 * 8);
  });

  it('hashes to 64 well-spread bits (distinct for near-identical strings, unicode included)', () => {
    const seen = new Set<string>();
    for (const s of [
      '',
      'a',
      'b',
      'ab',
      'ba',
      'é',
      'e\u0301',
      '😀',
      '\uD83D',
      'a'.repeat(512),
      'a'.repeat(511) + 'b',
    ]) {
      const [hi, lo] = hash64(s);
      expect(hi).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThan(2 ** 32);
      expect(lo).toBeLessThan(2 ** 32);
      seen.add(`${hi}:${lo}`);
    }
    expect(seen.size).toBe(11);
    // Each output bit flips for about half of one-character changes.
    const ones = new Array<number>(64).fill(0);
    const trials = 4000;
    for (let i = 0; i < trials; i++) {
      const [h1, l1] = hash64(`id-${i}`);
      const [h2, l2] = hash64(`id-${i + 1}`);
      for (let b = 0; b < 32; b++) {
        ones[b]! += ((h1 ^ h2) >>> b) & 1;
        ones[32 + b]! += ((l1 ^ l2) >>> b) & 1;
      }
    }
    for (const count of ones) expect(Math.abs(count / trials - 0.5)).toBeLessThan(0.05);
  });
});
