/**
 * A role (gpu-worker, scheduler or producer) as a real process, started from
 * the sources with tsx, for tests that kill one with SIGKILL (or stop it with
 * SIGSTOP, or send it SIGTERM). Its output is kept for the failure message;
 * `ready` resolves on a log line the role prints once started (pino JSON at
 * level info).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { testFileRootsEnv } from './file-roots.ts';
import { until } from './until.ts';

const entries = {
  worker: fileURLToPath(new URL('../../gpu-worker/main.ts', import.meta.url)),
  scheduler: fileURLToPath(new URL('../../scheduler/main.ts', import.meta.url)),
  producer: fileURLToPath(new URL('../../producer/main.ts', import.meta.url)),
} as const;
/** The line each role logs once it is up (a scheduler: once it leads; see `standbyLine`). */
const readyLine = {
  worker: 'gpu-worker ready',
  scheduler: 'became scheduler leader',
  producer: 'producer ready',
} as const;
/** A scheduler logs this before it campaigns for the lease: up, leading or not. */
export const standbyLine = 'autoscal';

export interface RoleProcess {
  readonly role: keyof typeof entries;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
  output(): string;
  /** Resolves once the role has said it is up, or has logged `line` (rejects with its output after `timeoutMs`). */
  ready(timeoutMs?: number, line?: string): Promise<void>;
  /** Sends a signal (SIGTERM, SIGSTOP, SIGCONT) if the process still runs. */
  signal(signal: NodeJS.Signals): void;
  /** kill -9, and wait for the process to be gone. */
  kill(): Promise<void>;
}

/** `entry` replaces the role's entry point (e.g. a test worker that wires a test backend into startWorker). */
export function startRole(
  role: keyof typeof entries,
  env: Record<string, string>,
  entry: string = entries[role],
): RoleProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', entry], {
    env: { ...process.env, LOG_LEVEL: 'info', ...testFileRootsEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const running = (): boolean => proc.exitCode === null && proc.signalCode === null;
  return {
    role,
    proc,
    pid: proc.pid!,
    exited,
    output: () => output,
    async ready(timeoutMs = 30_000, line: string = readyLine[role]) {
      await until(async () => {
        if (proc.exitCode !== null) throw new Error(`${role} exited (${proc.exitCode}):\n${output}`);
        return output.includes(line) ? true : undefined;
      }, timeoutMs).catch((err: unknown) => {
        throw new Error(`${role} did not start: ${err instanceof Error ? err.message : String(err)}\n${output}`);
      });
    },
    signal(signal) {
      if (running()) proc.kill(signal);
    },
    async kill() {
      if (running()) proc.kill('SIGKILL');
      await exited;
    },
  };
}
