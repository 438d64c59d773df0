/**
 * `npm start`'s launcher (launcher/main.ts) as a real process, from the
 * sources with tsx, on a free loopback port: for end-to-end tests of the
 * whole single-machine fleet. Its output is kept for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../launcher/local-redis.ts';
import { testFileRootsEnv } from './file-roots.ts';
import { until } from './until.ts';

const launcherEntry = fileURLToPath(new URL('../../launcher/main.ts', import.meta.url));

export interface LauncherProcess {
  readonly proc: ChildProcess;
  /** The producer API, http://127.0.0.1:<port>. */
  readonly url: string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  output(): string;
  /** kill -9 if it still runs, and wait for it. */
  kill(): Promise<void>;
}

/** Starts the launcher with `env` over this process's and waits for its banner (rejects with its output). */
export async function startLauncher(env: Record<string, string>, timeoutMs = 60_000): Promise<LauncherProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', launcherEntry], {
    // file:// under the temporary directory unless env says otherwise (INTERFLEET_FILE_ROOTS: '' for the data dir).
    env: { ...process.env, ...testFileRootsEnv, ...env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const launcher: LauncherProcess = {
    proc,
    url: `http://127.0.0.1:${port}`,
    exited,
    output: () => output,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
  try {
    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`it exited (${proc.exitCode})`);
      return output.includes('Ctrl-C stops everything') ? true : undefined;
    }, timeoutMs);
  } catch (err) {
    await launcher.kill();
    throw new Error(`the launcher did not start: ${err instanceof Error ? err.message : String(err)}\n${output}`);
  }
  return launcher;
}
