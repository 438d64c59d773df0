/**
 * A role (gpu-worker or scheduler) as a real process, started from the
 * sources with tsx, for tests that kill one with SIGKILL. Its output is kept
 * for the failure message; `ready` resolves on a log line the role prints once
 * started (pino JSON at level info).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { testFileRootsEnv } from './file-roots.ts';
import { until } from './until.ts';

const entries = {
  worker: fileURLToPath(new URL('../../gpu-worker/main.ts', import.meta.url)),
  scheduler: fileURLToPath(new URL('../../scheduler/main.ts', import.meta.url)),
} as const;
/** The line each role logs once it is up. */
const readyLine = { worker: 'gpu-worker ready', scheduler: 'became scheduler leader' } as const;

export interface RoleProcess {
  readonly role: keyof typeof entries;
  readonly proc: ChildProcess;
  readonly pid: number;
  output(): string;
  /** Resolves once the role has said it is up (rejects with its output after `timeoutMs`). */
  ready(timeoutMs?: number): Promise<void>;
  /** kill -9, and wait for the process to be gone. */
  kill(): Promise<void>;
}

export function startRole(role: keyof typeof entries, env: Record<string, string>): RoleProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', entries[role]], {
    env: { ...process.env, LOG_LEVEL: 'info', ...testFileRootsEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    role,
    proc,
    pid: proc.pid!,
    output: () => output,
    async ready(timeoutMs = 30_000) {
      await until(async () => {
        if (proc.exitCode !== null) throw new Error(`${role} exited (${proc.exitCode}):\n${output}`);
        return output.includes(readyLine[role]) ? true : undefined;
      }, timeoutMs).catch((err: unknown) => {
        throw new Error(`${role} did not start: ${err instanceof Error ? err.message : String(err)}\n${output}`);
      });
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}
