/**
 * The set of custom_ids seen so far in a batch, for duplicate detection while
 * planning, in memory that does not grow with the batch (principle 3): the
 * ids themselves are never kept, only a 64-bit hash of each.
 *
 * - The recent hashes sit in an open-addressing table (linear probing) of two
 *   32-bit words per slot in one Uint32Array, doubled when 3/4 full, up to
 *   `maxTableSlots` (default 2^19 slots: 4 MiB, 393,216 ids).
 * - When the table is full at that size it is spilled: its hashes are merged
 *   into one run file on local disk (`spillDir`, default the OS temp folder),
 *   grouped by their top 14 bits into 16,384 buckets (a 128 KiB directory of
 *   bucket offsets stays in memory), and the table starts empty again. The
 *   file is unlinked as soon as it is created, so it never outlives the
 *   process; `close()` releases it at once (else a finaliser does, at GC).
 * - A Bloom filter over the spilled hashes (`filterBits`, default 2^26:
 *   8 MiB, 3 probes) answers "never spilled" for most new ids without disk;
 *   only when it says "maybe" is the id's bucket read (one pread) and scanned.
 *
 * Memory: at most the table (4 MiB) + the filter (8 MiB) + the directory
 * (128 KiB), plus, while a spill runs, the table's hashes once more (3 MiB),
 * two 1 MiB I/O buffers and 384 KiB of bucket bookkeeping, and one read
 * buffer the size of a bucket, whatever the number of ids; before the
 * first spill, only the table (10.7 to 21 bytes per id, as before). Disk: 8
 * bytes per spilled id, twice that during a merge. Speed: below the first
 * spill nothing changes; beyond it, each spill rewrites the run (sequential
 * I/O, O(ids) each), and a lookup reads disk only on a filter "maybe": about
 * 1 in 10,000 ids at 1M spilled, 1 in 20 at 10M (the filter fills up: past
 * ~50M ids most lookups read a bucket, still exact, slower).
 *
 * Exactness is unchanged by spilling: the same 64-bit hashes are compared, in
 * memory or on disk. False positives: two different ids share a 64-bit hash
 * with probability about n^2 / 2^65 over n ids (1 in 37 million for a million
 * ids, 1 in 370,000 for ten million), and then the later one is reported as a
 * duplicate. The hash is a fast non-cryptographic one over the id's UTF-16
 * code units (two 32-bit multiply-xor lanes, cross-mixed at the end, after
 * cyrb53); the estimate assumes it behaves as a random function on ids, which
 * holds for ordinary ids, not for ids crafted against it (a batch's author can
 * only hurt their own batch that way).
 *
 * If the spill file cannot be written (no space, read-only disk), the table
 * keeps growing in memory instead, as it did before spilling existed:
 * still exact, no longer bounded (`spillError` says why).
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

const EMPTY_HI = 0;
const EMPTY_LO = 0;
const MAX_LOAD = 0.75;
const MIN_CAPACITY = 1024;
const DEFAULT_MAX_TABLE_SLOTS = 2 ** 19;
const DEFAULT_FILTER_BITS = 2 ** 26;
const FILTER_PROBES = 3;
const BUCKET_BITS = 14;
const BUCKETS = 2 ** BUCKET_BITS;
/** Bytes of a spilled hash: high then low word, little-endian. */
const ENTRY_BYTES = 8;
/** I/O buffer of a merge. */
const IO_BYTES = 1 << 20;

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
  /** Ids to make room for up front (default: a small table that grows); at most `maxTableSlots` slots. */
  initialCapacity?: number;
  /** Slots the in-memory table grows to before it spills to disk: a power of two >= 1024 (default 2^19, 4 MiB). */
  maxTableSlots?: number;
  /** Bits of the filter over spilled ids: a power of two from 2^10 to 2^32 (default 2^26, 8 MiB). */
  filterBits?: number;
  /** Folder of the spill file (default the OS temp folder). */
  spillDir?: string;
}

function powerOfTwo(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max || 2 ** Math.round(Math.log2(value)) !== value) {
    throw new RangeError(`${name} must be a power of two from ${min} to ${max}: ${value}`);
  }
  return value;
}

/** The spilled hashes: one file, bucket b at entries [offsets[b], offsets[b + 1]). */
interface Run {
  fd: number;
  offsets: Float64Array;
}

const closeRun = (fd: number): void => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
};
const finalizer = new FinalizationRegistry<{ fd: number | undefined }>((held) => {
  if (held.fd !== undefined) closeRun(held.fd);
});

export class CustomIdSet {
  /** Slot i is words 2i (high half) and 2i+1 (low half); all-zero is an empty slot. */
  private table: Uint32Array;
  private mask: number;
  /** Ids in the table now; `count` counts the spilled ones too. */
  private inTable = 0;
  private count = 0;
  private readonly maxSlots: number;
  private readonly filterBits: number;
  private readonly spillDir: string;
  private filter: Uint32Array | undefined;
  private run: Run | undefined;
  private readBuffer = Buffer.alloc(0);
  private readonly held: { fd: number | undefined } = { fd: undefined };
  private spillFailure: Error | undefined;

  constructor(opts: CustomIdSetOptions = {}) {
    this.maxSlots = powerOfTwo('maxTableSlots', opts.maxTableSlots ?? DEFAULT_MAX_TABLE_SLOTS, MIN_CAPACITY, 2 ** 30);
    this.filterBits = powerOfTwo('filterBits', opts.filterBits ?? DEFAULT_FILTER_BITS, 2 ** 10, 2 ** 32);
    this.spillDir = opts.spillDir ?? os.tmpdir();
    const wanted = Math.max(MIN_CAPACITY, Math.ceil((opts.initialCapacity ?? 0) / MAX_LOAD));
    const slots = Math.min(this.maxSlots, 2 ** Math.ceil(Math.log2(wanted)));
    this.table = new Uint32Array(slots * 2);
    this.mask = slots - 1;
    finalizer.register(this, this.held, this);
  }

  /** Ids added so far (distinct, as far as the hash tells). */
  get size(): number {
    return this.count;
  }

  /** Bytes held in memory now: the table, the filter and the run's directory. */
  get bytes(): number {
    return (
      this.table.byteLength +
      (this.filter?.byteLength ?? 0) +
      (this.run?.offsets.byteLength ?? 0) +
      this.readBuffer.length
    );
  }

  /** Ids written to the spill file so far. */
  get spilled(): number {
    return this.run?.offsets[BUCKETS] ?? 0;
  }

  /** Why spilling stopped (the table then grows in memory), if it did. */
  get spillError(): Error | undefined {
    return this.spillFailure;
  }

  /** Adds an id; false when it (or an id with the same 64-bit hash) was already there. */
  add(id: string): boolean {
    const [hi, h2] = hash64(id);
    const lo = hi === EMPTY_HI && h2 === EMPTY_LO ? 1 : h2; // all-zero marks an empty slot
    const slot = this.find(hi, lo);
    if (slot < 0 || this.spilledHas(hi, lo)) return false;
    this.table[2 * slot] = hi;
    this.table[2 * slot + 1] = lo;
    this.count++;
    if (++this.inTable > (this.mask + 1) * MAX_LOAD) {
      if (this.mask + 1 < this.maxSlots || this.spillFailure) this.grow();
      else this.spill();
    }
    return true;
  }

  /** Whether an id (or an id with the same 64-bit hash) was added. */
  has(id: string): boolean {
    const [hi, h2] = hash64(id);
    const lo = hi === EMPTY_HI && h2 === EMPTY_LO ? 1 : h2;
    return this.find(hi, lo) < 0 || this.spilledHas(hi, lo);
  }

  /** Releases the spill file and the filter: the end of planning (the set forgets what it spilled). */
  close(): void {
    if (this.run) closeRun(this.run.fd);
    this.run = undefined;
    this.held.fd = undefined;
    this.filter = undefined;
    this.readBuffer = Buffer.alloc(0);
    finalizer.unregister(this);
  }

  /** The empty slot where the hash would go, or -1 when it is in the table. */
  private find(hi: number, lo: number): number {
    const table = this.table;
    // The slot comes from both halves mixed: the table size never matters to the hash's quality.
    for (let i = (hi ^ lo) & this.mask; ; i = (i + 1) & this.mask) {
      const h = table[2 * i]!;
      const l = table[2 * i + 1]!;
      if (h === EMPTY_HI && l === EMPTY_LO) return i;
      if (h === hi && l === lo) return -1;
    }
  }

  private grow(): void {
    const old = this.table;
    const slots = (this.mask + 1) * 2;
    this.table = new Uint32Array(slots * 2);
    this.mask = slots - 1;
    for (let i = 0; i < old.length; i += 2) {
      const hi = old[i]!;
      const lo = old[i + 1]!;
      if (hi === EMPTY_HI && lo === EMPTY_LO) continue;
      const slot = this.find(hi, lo);
      this.table[2 * slot] = hi;
      this.table[2 * slot + 1] = lo;
    }
  }

  // ---- the spilled hashes ------------------------------------------------

  /** The filter's bit positions for a hash (double hashing over its two halves). */
  private probe(hi: number, lo: number, i: number): number {
    return (lo + Math.imul(i, hi | 1)) & (this.filterBits - 1);
  }

  private spilledHas(hi: number, lo: number): boolean {
    const run = this.run;
    const filter = this.filter;
    if (!run || !filter) return false;
    for (let i = 0; i < FILTER_PROBES; i++) {
      const bit = this.probe(hi, lo, i) >>> 0;
      if ((filter[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    const b = hi >>> (32 - BUCKET_BITS);
    const from = run.offsets[b]!;
    const bytes = (run.offsets[b + 1]! - from) * ENTRY_BYTES;
    if (bytes === 0) return false;
    if (this.readBuffer.length < bytes) this.readBuffer = Buffer.allocUnsafe(Math.max(bytes, 4096));
    readFully(run.fd, this.readBuffer, bytes, from * ENTRY_BYTES);
    const buf = this.readBuffer;
    for (let off = 0; off < bytes; off += ENTRY_BYTES) {
      if (buf.readUInt32LE(off) === hi && buf.readUInt32LE(off + 4) === lo) return true;
    }
    return false;
  }

  /** Merges the table into the run file (a new file, bucket by bucket), then empties the table. */
  private spill(): void {
    const table = this.table;
    // The table's hashes grouped by bucket (a counting sort on the top bits).
    const starts = new Float64Array(BUCKETS + 1);
    for (let i = 0; i < table.length; i += 2) {
      if (table[i] !== EMPTY_HI || table[i + 1] !== EMPTY_LO) starts[(table[i]! >>> (32 - BUCKET_BITS)) + 1]!++;
    }
    for (let b = 0; b < BUCKETS; b++) starts[b + 1]! += starts[b]!;
    const grouped = new Uint32Array(this.inTable * 2);
    const next = starts.slice(0, BUCKETS);
    for (let i = 0; i < table.length; i += 2) {
      if (table[i] === EMPTY_HI && table[i + 1] === EMPTY_LO) continue;
      const at = next[table[i]! >>> (32 - BUCKET_BITS)]!++;
      grouped[2 * at] = table[i]!;
      grouped[2 * at + 1] = table[i + 1]!;
    }
    let merged: Run;
    try {
      merged = this.merge(grouped, starts);
    } catch (err) {
      // No disk for it: keep everything in memory from now on (exact, unbounded).
      this.spillFailure = err instanceof Error ? err : new Error(String(err));
      this.grow();
      return;
    }
    if (this.run) closeRun(this.run.fd);
    this.run = merged;
    this.held.fd = merged.fd;
    this.filter ??= new Uint32Array(this.filterBits / 32);
    for (let i = 0; i < grouped.length; i += 2) {
      for (let p = 0; p < FILTER_PROBES; p++) {
        const bit = this.probe(grouped[i]!, grouped[i + 1]!, p) >>> 0;
        this.filter[bit >>> 5]! |= 1 << (bit & 31);
      }
    }
    table.fill(0);
    this.inTable = 0;
  }

  /** A new run file: per bucket, the old run's entries then the new ones. */
  private merge(grouped: Uint32Array, starts: Float64Array): Run {
    const file = path.join(this.spillDir, `.interfleet-custom-ids-${process.pid}-${randomBytes(6).toString('hex')}`);
    const fd = openSync(file, 'wx+', 0o600);
    unlinkSync(file); // lives as long as its descriptor, never longer than the process
    try {
      const old = this.run;
      const offsets = new Float64Array(BUCKETS + 1);
      const out = Buffer.allocUnsafe(IO_BYTES);
      const input = old ? Buffer.allocUnsafe(IO_BYTES) : undefined;
      let outUsed = 0;
      let written = 0;
      const flush = () => {
        writeFully(fd, out, outUsed, written);
        written += outUsed;
        outUsed = 0;
      };
      // The old run is read once, in order: its buckets are contiguous and in bucket order.
      let inFrom = 0;
      let inUsed = 0;
      let inAt = 0;
      const copyOld = (entries: number) => {
        let bytes = entries * ENTRY_BYTES;
        while (bytes > 0) {
          if (inAt === inUsed) {
            const total = old!.offsets[BUCKETS]! * ENTRY_BYTES;
            inUsed = Math.min(IO_BYTES, total - inFrom);
            readFully(old!.fd, input!, inUsed, inFrom);
            inFrom += inUsed;
            inAt = 0;
          }
          const n = Math.min(bytes, inUsed - inAt, IO_BYTES - outUsed);
          input!.copy(out, outUsed, inAt, inAt + n);
          inAt += n;
          outUsed += n;
          bytes -= n;
          if (outUsed === IO_BYTES) flush();
        }
      };
      let entries = 0;
      for (let b = 0; b < BUCKETS; b++) {
        offsets[b] = entries;
        if (old) {
          const n = old.offsets[b + 1]! - old.offsets[b]!;
          copyOld(n);
          entries += n;
        }
        for (let e = starts[b]!; e < starts[b + 1]!; e++) {
          out.writeUInt32LE(grouped[2 * e]!, outUsed);
          out.writeUInt32LE(grouped[2 * e + 1]!, outUsed + 4);
          outUsed += ENTRY_BYTES;
          if (outUsed === IO_BYTES) flush();
          entries++;
        }
      }
      offsets[BUCKETS] = entries;
      flush();
      return { fd, offsets };
    } catch (err) {
      closeRun(fd);
      throw err;
    }
  }
}

function readFully(fd: number, buf: Buffer, length: number, position: number): void {
  for (let done = 0; done < length;) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new Error(`custom_id spill file ended early at byte ${position + done}`);
    done += n;
  }
}

function writeFully(fd: number, buf: Buffer, length: number, position: number): void {
  for (let done = 0; done < length;) done += writeSync(fd, buf, done, length - done, position + done);
}
