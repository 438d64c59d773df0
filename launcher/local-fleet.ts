/**
 * `npm start`'s gpu-worker processes, one set per pool, in place of the
 * Kubernetes Deployments: the launcher starts each pool at its size (its
 * policy's minReplicas, else launcher.workers) and the scheduler's `local`
 * actuator adds and stops processes through the LocalFleet view.
 *
 * A process counts toward its pool's replicas from fork until it is asked to
 * stop or exits; it is ready once it says so over IPC (gpu-worker/main.ts).
 * Stopping is a drain (SIGTERM: the worker takes no new work, finishes or
 * yields what it holds, exits), with SIGKILL only past the grace period. A
 * process that dies on its own simply leaves its pool; the autoscaler's next
 * pass sees one replica fewer and starts another.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import type { LocalFleet } from '../scheduler/autoscaler/actuators/local.ts';
import type { ReplicaCount } from '../scheduler/autoscaler/actuators/actuator.ts';

export interface WorkerReady {
  type: 'ready';
  workerId: string;
  pool: string;
  metricsUrl?: string;
}

interface Member {
  handle: number;
  pool: string;
  child: ChildProcess;
  ready: WorkerReady | undefined;
  stopping: boolean;
  exited: Promise<void>;
}

// Run from its bundle (dist/launcher/main.js, `npm start`), the workers run from theirs with plain
// node (none of the launcher's V8 flags); run from source, through tsx.
const bundled = import.meta.url.endsWith('.js');
const workerEntry = fileURLToPath(new URL(`../gpu-worker/main.${bundled ? 'js' : 'ts'}`, import.meta.url));
const workerExecArgv = bundled ? [] : ['--import', 'tsx'];

export class LocalProcessFleet implements LocalFleet {
  private readonly procs = new Map<number, Member>();
  private next = 0;
  private closing = false;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    /** SIGKILL this long after SIGTERM: the worker's own grace plus time to exit. */
    private readonly killAfterMs = config.worker.shutdownGraceMs + 5000,
  ) {}

  /** Each pool's starting size: its policy's minReplicas, else launcher.workers. */
  static initialSize(pool: Config['pools'][number], config: Config): number {
    return pool.autoscale ? pool.autoscale.minReplicas : config.launcher.workers;
  }

  count(pool: string): ReplicaCount {
    const live = this.live(pool);
    return { desired: live.length, ready: live.filter((m) => m.ready).length };
  }

  members(pool: string): ReadonlyArray<{ handle: number; workerId: string | undefined }> {
    return this.live(pool).map((m) => ({ handle: m.handle, workerId: m.ready?.workerId }));
  }

  start(pool: string): void {
    if (this.closing) return;
    const handle = this.next++;
    const child = fork(workerEntry, [], {
      execArgv: workerExecArgv,
      // Own process group: Ctrl-C reaches only the launcher, which drains the workers in order.
      detached: true,
      env: {
        ...process.env,
        REDIS_URL: this.config.redis.url,
        // The roots the launcher settled on (its data directory when the config named none).
        INTERFLEET_FILE_ROOTS: this.config.storage.file.roots.join(':'),
        WORKER_POOL: pool,
        WORKER_METRICS_PORT: '0',
      },
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const member: Member = { handle, pool, child, ready: undefined, stopping: false, exited };
    this.procs.set(handle, member);
    child.on('message', (msg: WorkerReady) => {
      if (msg?.type !== 'ready') return;
      member.ready = msg;
      this.logger.info({ pool, workerId: msg.workerId, handle }, 'local gpu-worker ready');
    });
    child.once('exit', (code, signal) => {
      this.procs.delete(handle);
      if (!member.stopping && !this.closing) {
        this.logger.warn({ pool, handle, code, signal }, 'local gpu-worker exited on its own');
      }
    });
  }

  stop(handle: number): void {
    const m = this.procs.get(handle);
    if (!m || m.stopping) return;
    m.stopping = true;
    this.logger.info({ pool: m.pool, workerId: m.ready?.workerId, handle }, 'stopping local gpu-worker (drain)');
    m.child.kill('SIGTERM');
    const timer = setTimeout(() => m.child.kill('SIGKILL'), this.killAfterMs);
    void m.exited.then(() => clearTimeout(timer));
  }

  /** Resolves with every starting process's ready message; rejects if one exits first. */
  async ready(): Promise<WorkerReady[]> {
    const pending = [...this.procs.values()].map(
      (m) =>
        new Promise<WorkerReady>((resolve, reject) => {
          if (m.ready) return resolve(m.ready);
          m.child.on('message', (msg: WorkerReady) => msg?.type === 'ready' && resolve(msg));
          m.child.once('exit', (code) =>
            reject(new Error(`local gpu-worker (pool ${m.pool}) exited with code ${code} before it was ready`)),
          );
        }),
    );
    return Promise.all(pending);
  }

  /** Drains every process (no more are started) and waits for them to exit. */
  async close(): Promise<void> {
    this.closing = true;
    const all = [...this.procs.values()];
    for (const m of all) this.stop(m.handle);
    await Promise.all(all.map((m) => m.exited));
  }

  private live(pool: string): Member[] {
    return [...this.procs.values()].filter((m) => m.pool === pool && !m.stopping);
  }
}
