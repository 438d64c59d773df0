/**
 * The trainers that ship with the worker: a job's command `builtin:<name>`
 * runs one of them as any user program runs (its own process, the same
 * runner contract), so that the whole training loop works on `npm start`
 * with nothing installed.
 *
 * From the sources (tests, `npm run cli`), a builtin runs through tsx's
 * loader, named by absolute URL because the rank's working directory has no
 * node_modules; from a bundle (bin/build), as the bundled script beside it.
 */
import { fileURLToPath } from 'node:url';
import { builtinPrograms } from '../../common/config.ts';

const fromSources = import.meta.url.endsWith('.ts');

/** Source file (from the sources) or bundle (beside the worker's bundle) of each builtin. */
const scripts: Record<(typeof builtinPrograms)[number], { source: string; bundle: string }> = {
  'builtin:text-classifier': { source: './builtin/text-classifier.ts', bundle: './trainer-text-classifier.js' },
};

export const isBuiltin = (command: string): command is (typeof builtinPrograms)[number] =>
  (builtinPrograms as readonly string[]).includes(command);

/** The argv a job's command and args run as: a builtin resolved to node and its script, anything else as given. */
export function resolveProgram(command: string, args: readonly string[]): { command: string; args: string[] } {
  if (!isBuiltin(command)) return { command, args: [...args] };
  const script = scripts[command];
  if (!fromSources)
    return { command: process.execPath, args: [fileURLToPath(new URL(script.bundle, import.meta.url)), ...args] };
  const tsx = import.meta.resolve('tsx');
  return {
    command: process.execPath,
    args: ['--import', tsx, fileURLToPath(new URL(script.source, import.meta.url)), ...args],
  };
}
