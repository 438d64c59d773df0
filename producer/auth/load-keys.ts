/** Reads the configured key sources (a file and/or inline text) into one KeyTable. */
import { readFileSync } from 'node:fs';
import type { Config } from '../../common/config.ts';
import { checkUnique, KeyFileError, parseKeyFile, type KeyEntry } from './key-file.ts';
import { KeyTable } from './key-table.ts';

export function loadKeyTable(
  auth: Config['producer']['auth'],
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): KeyTable {
  const entries: KeyEntry[] = [];
  if (auth.keysFile !== undefined) {
    let text: string;
    try {
      text = readFile(auth.keysFile);
    } catch (err) {
      throw new KeyFileError([`producer.auth.keysFile: cannot read ${auth.keysFile}: ${(err as Error).message}`]);
    }
    entries.push(...parseKeyFile(text, auth.keysFile));
  }
  if (auth.keys !== undefined && auth.keys.trim() !== '') {
    entries.push(...parseKeyFile(auth.keys, 'INTERFLEET_API_KEYS'));
  }
  checkUnique(entries);
  return new KeyTable(entries);
}
