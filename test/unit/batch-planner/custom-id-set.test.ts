import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CustomIdSet, hash64 } from '../../../producer/batch/custom-id-set.ts';

const spillDir = mkdtempSync(path.join(os.tmpdir(), 'custom-id-set-test-'));
afterAll(() => rmSync(spillDir, { recursive: true, force: true }));

describe('CustomIdSet', () => {
  it('tells a repeated id from a new one', () => {
    const set = new CustomIdSet();
    expect(set.add('a')).toBe(true);
    expect(set.add('b')).toBe(true);
    expect(set.add('a')).toBe(false);
    expect(set.has('b')).toBe(true);
    expect(set.has('c')).toBe(false);
    expect(set.size).toBe(2);
    expect(set.spilled).toBe(0);
  });

  it('keeps a million ids exactly in bounded memory, spilling past the table cap', () => {
    const set = new CustomIdSet({ spillDir });
    const n = 1_000_000;
    let falseDuplicates = 0;
    for (let i = 0; i < n; i++) if (!set.add(`request-${i}`)) falseDuplicates++;
    expect(falseDuplicates).toBe(0);
    expect(set.size).toBe(n);
    expect(set.spilled).toBe(2 * 393_217); // two spills, each when a 2^19-slot table passes 3/4 full
    for (let i = 0; i < n; i += 997) expect(set.add(`request-${i}`)).toBe(false);
    expect(set.has(`request-${n}`)).toBe(false);
    expect(set.size).toBe(n);
    // The table (4 MiB) + the filter (8 MiB) + the directory, not 16 bytes an id.
    expect(set.bytes).toBeLessThan(12.5 * 2 ** 20);
    expect(set.spillError).toBeUndefined();
    set.close();
    // The spill file was unlinked when it was created.
    expect(readdirSync(spillDir)).toEqual([]);
  });

  it.each([
    { name: 'a saturated filter (every lookup reads its bucket)', filterBits: 2 ** 10 },
    { name: 'a sparse filter', filterBits: 2 ** 24 },
  ])('stays exact across many spills with $name', ({ filterBits }) => {
    const set = new CustomIdSet({ spillDir, maxTableSlots: 1024, filterBits });
    const n = 40_000;
    for (let i = 0; i < n; i++) {
      expect(set.add(`id-${i}`)).toBe(true);
      // Repeats of recent ids (in the table) and of old ones (spilled).
      if (i % 7 === 0) expect(set.add(`id-${i}`)).toBe(false);
      if (i % 11 === 0) expect(set.add(`id-${Math.floor(i / 3)}`)).toBe(false);
    }
    expect(set.size).toBe(n);
    expect(set.spilled).toBeGreaterThan(n - 1024);
    for (let i = 0; i < n; i += 13) expect(set.has(`id-${i}`)).toBe(true);
    for (let i = n; i < n + 2000; i++) expect(set.has(`id-${i}`)).toBe(false);
    expect(set.bytes).toBeLessThan(2 * 2 ** 20 + 2 ** 18 + 2 ** 16);
    set.close();
  });

  it('keeps growing in memory, still exact, when it cannot spill', () => {
    const set = new CustomIdSet({ spillDir: path.join(spillDir, 'missing'), maxTableSlots: 1024 });
    for (let i = 0; i < 5000; i++) expect(set.add(`x${i}`)).toBe(true);
    for (let i = 0; i < 5000; i += 3) expect(set.add(`x${i}`)).toBe(false);
    expect(set.spillError?.message).toMatch(/ENOENT/);
    expect(set.spilled).toBe(0);
    expect(set.bytes).toBe(8192 * 8);
  });

  it('presizes with initialCapacity, up to the table cap', () => {
    const set = new CustomIdSet({ initialCapacity: 3000 });
    expect(set.bytes).toBe(4096 * 8);
    for (let i = 0; i < 3000; i++) set.add(String(i));
    expect(set.bytes).toBe(4096 * 8);
    expect(new CustomIdSet({ initialCapacity: 10_000_000, maxTableSlots: 2 ** 12 }).bytes).toBe(2 ** 12 * 8);
  });

  it('rejects sizes that are not powers of two in range', () => {
    expect(() => new CustomIdSet({ maxTableSlots: 1000 })).toThrow(RangeError);
    expect(() => new CustomIdSet({ maxTableSlots: 512 })).toThrow(RangeError);
    expect(() => new CustomIdSet({ filterBits: 3 * 2 ** 20 })).toThrow(RangeError);
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
