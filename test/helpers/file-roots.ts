/**
 * The file roots (storage.file.roots) tests run under: the temporary
 * directory, where every test makes its own folder, realpath'd so that a
 * symlinked TMPDIR still matches the real paths the fleet checks.
 */
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';

export const testFileRoot = realpathSync(tmpdir());

/** The environment that gives a role (or a config parsed from env) these roots. */
export const testFileRootsEnv = { INTERFLEET_FILE_ROOTS: testFileRoot } as const;
