/**
 * The set of custom_ids seen so far in a batch, for duplicate detection while
 * planning, in bounded and compact memory (principle 3): the ids themselves
 * are never kept, only a 64-bit hash of each, in an open-addressing table
 * (linear probing) of two 32-bit words per slot in one Uint32Array, doubled
 * when it is 3/4 full.
 *
 * Memory: 8 bytes per slot, the table 3/8 to 3/4 full, so 10.7 to 21 bytes
 * per id, and during a doubling the old and the new table together (1.5x the
 * new one). For one million ids: a 2^21-slot table, 16 MiB (24 MiB at the
 * doubling into it); for ten million: 2^24 slots, 128 MiB. `initialCapacity`
 * presizes the table when the count is known.
 *
 * False positives: two different ids share a 64-bit hash with probability
 * about n^2 / 2^65 over n ids (1 in 37 million for a million ids, 1 in 370,000
 * for ten million), and then the later one is reported as a duplicate. The
 * hash is a fast non-cryptographic one over the id's UTF-16 code units
 * (two 32-bit multiply-xor lanes, cross-mixed at the end, after cyrb53); the
 * estimate assumes it behaves as a random function on ids, which holds for
 * ordinary ids, not for ids crafted against it (a batch's author can only
 * hurt their own batch that way).
 */

const EMPTY_HI = 0;
const EMPTY_LO = 0;
const MAX_LOAD = 0.75;
const MIN_CAPACITY = 1024;

/** A 64-bit hash of a string, as two unsigned 32-bit halves. */
export function hash64(s: string): [hi: number, lo: number] {
  let h1 = 0xdeadbeef ^ s.length;
  let h2 = 0x41c6ce57 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return [h1 >>> 0, h2 >>> 0];
}

export interface CustomIdSetOptions {
  /** Ids to make room for up front (default: a small table that grows). */
  initialCapacity?: number;
}

export class CustomIdSet {
  /** Slot i is words 2i (high half) and 2i+1 (low half); all-zero is an empty slot. */
  private table: Uint32Array;
  private mask: number;
  private count = 0;

  constructor(opts: CustomIdSetOptions = {}) {
    const wanted = Math.max(MIN_CAPACITY, Math.ceil((opts.initialCapacity ?? 0) / MAX_LOAD));
    const slots = 2 ** Math.ceil(Math.log2(wanted));
    this.table = new Uint32Array(slots * 2);
    this.mask = slots - 1;
  }

  /** Ids added so far (distinct, as far as the hash tells). */
  get size(): number {
    return this.count;
  }

  /** Bytes the table holds now. */
  get bytes(): number {
    return this.table.byteLength;
  }

  /** Adds an id; false when it (or an id with the same 64-bit hash) was already there. */
  add(id: string): boolean {
    const [hi, h2] = hash64(id);
    const lo = hi === EMPTY_HI && h2 === EMPTY_LO ? 1 : h2; // all-zero marks an empty slot
    if (this.insert(this.table, this.mask, hi, lo)) {
      if (++this.count > (this.mask + 1) * MAX_LOAD) this.grow();
      return true;
    }
    return false;
  }

  /** Whether an id (or an id with the same 64-bit hash) was added. */
  has(id: string): boolean {
    const [hi, h2] = hash64(id);
    const lo = hi === EMPTY_HI && h2 === EMPTY_LO ? 1 : h2; // all-zero marks an empty slot
    const table = this.table;
    for (let i = (hi ^ lo) & this.mask; ; i = (i + 1) & this.mask) {
      const h = table[2 * i]!;
      const l = table[2 * i + 1]!;
      if (h === EMPTY_HI && l === EMPTY_LO) return false;
      if (h === hi && l === lo) return true;
    }
  }

  private insert(table: Uint32Array, mask: number, hi: number, lo: number): boolean {
    // The slot comes from both halves mixed: the table size never matters to the hash's quality.
    for (let i = (hi ^ lo) & mask; ; i = (i + 1) & mask) {
      const h = table[2 * i]!;
      const l = table[2 * i + 1]!;
      if (h === EMPTY_HI && l === EMPTY_LO) {
        table[2 * i] = hi;
        table[2 * i + 1] = lo;
        return true;
      }
      if (h === hi && l === lo) return false;
    }
  }

  private grow(): void {
    const old = this.table;
    const slots = (this.mask + 1) * 2;
    const table = new Uint32Array(slots * 2);
    const mask = slots - 1;
    for (let i = 0; i < old.length; i += 2) {
      const hi = old[i]!;
      const lo = old[i + 1]!;
      if (hi !== EMPTY_HI || lo !== EMPTY_LO) this.insert(table, mask, hi, lo);
    }
    this.table = table;
    this.mask = mask;
  }
}
