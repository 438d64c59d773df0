/**
 * The folder `npm start` lets file:// batches and training jobs use when the
 * config names no storage.file.roots: one data directory, named at start and
 * created if missing, so that the embedded default works without opening
 * every file the user can read to whoever reaches the API.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../common/config.ts';

/** $XDG_DATA_HOME/interfleet/data, else ~/.local/share/interfleet/data (user data, not state or cache). */
export function defaultFileDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const data = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share');
  return join(data, 'interfleet', 'data');
}

/**
 * The config with its file roots: as configured, or else the launcher's data directory
 * (launcher.dataDir, env INTERFLEET_DATA_DIR; else defaultFileDataDir), created and realpath'd.
 * `dataDir` is set when the launcher chose it.
 */
export function withFileRoots(
  config: Config,
  env: NodeJS.ProcessEnv = process.env,
): { config: Config; dataDir?: string } {
  if (config.storage.file.roots.length > 0) return { config };
  const wanted = config.launcher.dataDir ?? defaultFileDataDir(env);
  mkdirSync(wanted, { recursive: true });
  const dataDir = realpathSync(wanted);
  return {
    config: { ...config, storage: { ...config.storage, file: { ...config.storage.file, roots: [dataDir] } } },
    dataDir,
  };
}
