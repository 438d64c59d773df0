/**
 * Child processes of the benchmark: forked TypeScript entry points (run by
 * tsx), a `ready` handshake over IPC, request/response messages, and a stop
 * that escalates from SIGTERM to SIGKILL — always by the child's own pid.
 */
import { fork, type ChildProcess } from 'node:child_process';

export interface ChildMessage {
  type: string;
  id?: number;
  [key: string]: unknown;
}

export class Child {
  private nextId = 1;
  private readonly waiting = new Map<number, (msg: ChildMessage) => void>();
  private readonly exited: Promise<number | null>;
  readonly ready: Promise<ChildMessage>;

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    readyTimeoutMs: number,
  ) {
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    this.ready = new Promise<ChildMessage>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name}: not ready within ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
      proc.on('message', (raw) => {
        const msg = raw as ChildMessage;
        if (msg.type === 'ready') {
          clearTimeout(timer);
          resolve(msg);
        } else if (msg.id !== undefined) {
          this.waiting.get(msg.id)?.(msg);
          this.waiting.delete(msg.id);
        }
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name}: exited (code ${code}) before it was ready`));
      });
    });
    this.ready.catch(() => undefined);
  }

  /** Forks `modulePath` with tsx (unless `tsx` is false: a bundle) and `nodeArgs` (e.g. `--cpu-prof`); stdout/stderr go to ours. */
  static start(
    name: string,
    modulePath: string,
    env: Record<string, string>,
    readyTimeoutMs = 20_000,
    nodeArgs: readonly string[] = [],
    tsx = true,
  ): Child {
    const proc = fork(modulePath, [], {
      execArgv: [...(tsx ? ['--import', 'tsx'] : []), ...nodeArgs],
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Child(name, proc, readyTimeoutMs);
  }

  /** Sends a message and waits for the reply carrying the same id. */
  request(msg: ChildMessage, timeoutMs = 5000): Promise<ChildMessage> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name}: no answer to ${msg.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.proc.send({ ...msg, id });
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
  stop(graceMs = 5000): Promise<void> {
    return stopProcess(this.proc, this.exited, graceMs);
  }

  /** Kills at once (emergency cleanup). */
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once `exited` (the process's exit) does. */
export async function stopProcess(proc: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
