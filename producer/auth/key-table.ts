/**
 * The keys a producer accepts, held as SHA-256 digests only. A lookup hashes
 * the presented key and compares it with every digest in constant time
 * (crypto.timingSafeEqual, no early exit), so neither a key's bytes nor its
 * place in the table leaks through response timing.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Principal } from '../../common/auth/principal.ts';
import { keyDigest, type KeyEntry } from './key-file.ts';

export class KeyTable {
  constructor(private readonly entries: readonly KeyEntry[]) {}

  get size(): number {
    return this.entries.length;
  }

  find(presented: string): Principal | undefined {
    const digest = keyDigest(presented);
    let found: Principal | undefined;
    for (const entry of this.entries) {
      // Every entry is compared even after a match: the loop's length does not depend on where the key is.
      const match = timingSafeEqual(entry.digest, digest);
      if (match) found = entry.principal;
    }
    return found;
  }
}
