/**
 * Runs one rank's training command: spawned without a shell (argv as given,
 * nothing expanded), in its own process group so that a stop reaches the
 * processes it starts (data loaders, launchers), with the rank's environment.
 * Its stdout is read line by line for metric lines; the end of its stderr is
 * kept for the failure reason. An abort stops it: SIGTERM to the group, then
 * SIGKILL after `killAfterMs`.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { metricLineSchema, type MetricLine, type RankJob } from '../../common/contracts/training.ts';

/** Longest stdout line looked at; longer ones are skipped whole (a metric line is short). */
const maxLineBytes = 64 * 1024;
/** How much of the end of stderr a failure reason quotes. */
export const stderrTailBytes = 2048;

/**
 * The worker's own variables a command may see: where programs are (PATH), the locale and time zone,
 * the dynamic linker's path (CUDA images set it), which GPUs are this process's and how NCCL reaches
 * its peers. Named one by one, never by prefix: NVIDIA_API_KEY would match `NVIDIA_*`. Nothing else
 * passes: no Redis URL, no cloud credentials or their config paths (GOOGLE_APPLICATION_CREDENTIALS,
 * OCI_*, AWS_*, KUBECONFIG), no API keys, no INTERFLEET_* of the worker's own config. Not HOME or
 * TMPDIR either (the worker's HOME holds ~/.oci, ~/.config/gcloud, ~/.aws, ~/.kube): a rank gets
 * its own (rankHome, rankTmp). Not NODE_OPTIONS: the worker's flags (a preloaded module, its heap
 * limit) are not the program's, and a builtin's own flags are in its argv (builtin-programs.ts).
 */
const inherited =
  /^(PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ|LD_LIBRARY_PATH|CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|NVIDIA_VISIBLE_DEVICES|NVIDIA_DRIVER_CAPABILITIES|NCCL_[A-Z0-9_]+)$/;

/** The worker's variables a command may see (the rest stay in the worker). */
export function inheritedEnv(base: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) if (value !== undefined && inherited.test(name)) env[name] = value;
  return env;
}

/** The rank's HOME and TMPDIR, inside its working directory (made by makeRankDirs, removed with it). */
export const rankHome = (work: string): string => join(work, 'home');
export const rankTmp = (work: string): string => join(work, 'tmp');

/** What a command's environment is built from, besides the rank's own variables. */
export interface BaseEnvInput {
  /** The worker's environment: only the inherited names above pass. */
  worker?: NodeJS.ProcessEnv;
  /** The pool's declared variables (pools[].lanes.training.env): set by the operator, passed as given. */
  declared?: Readonly<Record<string, string>>;
  /** The working directory (local runs): HOME and TMPDIR point inside it. */
  work?: string;
}

/**
 * The part of a command's environment that is not the rank's: the inherited variables, the pool's
 * declared ones over them, then HOME and TMPDIR in the working directory (when there is one).
 */
export function baseEnv(input: BaseEnvInput): Record<string, string> {
  return {
    ...inheritedEnv(input.worker ?? {}),
    ...input.declared,
    ...(input.work !== undefined && { HOME: rankHome(input.work), TMPDIR: rankTmp(input.work) }),
  };
}

/** The rank's directories (rank-files.ts), when the lane made them. */
export interface RankDirEnv {
  work: string;
  data: string;
  init: string;
  output: string;
}

/** What a rank's environment is built from (the runner contract's env). */
export interface RankEnvInput {
  worker?: NodeJS.ProcessEnv;
  declared?: Readonly<Record<string, string>>;
  dirs?: RankDirEnv;
  master?: { addr: string; port: number };
}

/**
 * The command's environment: baseEnv, then torchrun's names where they mean the same (RANK,
 * WORLD_SIZE; one rank per process, so LOCAL_RANK 0 of LOCAL_WORLD_SIZE 1), then the rank's
 * INTERFLEET_* ones: its directories, the URIs, and the hyperparameters as JSON. The rank's own
 * names come last: neither the worker nor the pool's declared variables can change them.
 */
export function rankEnv(job: RankJob, input: RankEnvInput = {}): Record<string, string> {
  const { dirs, master } = input;
  const params = JSON.stringify(job.params);
  return {
    ...baseEnv({ worker: input.worker, declared: input.declared, work: dirs?.work }),
    RANK: String(job.rank),
    WORLD_SIZE: String(job.worldSize),
    LOCAL_RANK: '0',
    LOCAL_WORLD_SIZE: '1',
    // Gang mode: where rank 0 listens, and how often the gang was restarted (torchrun's names).
    ...(master && { MASTER_ADDR: master.addr, MASTER_PORT: String(master.port) }),
    TORCHELASTIC_RESTART_COUNT: String(job.restart),
    INTERFLEET_RESTART: String(job.restart),
    ...(dirs && {
      INTERFLEET_WORK_DIR: dirs.work,
      INTERFLEET_DATA_DIR: dirs.data,
      INTERFLEET_INIT_DIR: dirs.init,
      INTERFLEET_OUTPUT_DIR: dirs.output,
    }),
    INTERFLEET_INIT_URI: job.initUri ?? '',
    INTERFLEET_HYPERPARAMS: params,
    INTERFLEET_RANK: String(job.rank),
    INTERFLEET_WORLD_SIZE: String(job.worldSize),
    INTERFLEET_ROUND: String(job.round),
    INTERFLEET_JOB_ID: job.jobId,
    INTERFLEET_DATA_URI: job.dataUri,
    INTERFLEET_CHECKPOINT_URI: job.checkpointUri,
    INTERFLEET_PREVIOUS_CHECKPOINT_URI: job.previousCheckpointUri ?? '',
    INTERFLEET_PARAMS: params,
  };
}

/** A stdout line as a metric, or undefined when it is not a JSON object with a `metric` name. */
export function parseMetricLine(line: string): MetricLine | undefined {
  const text = line.trim();
  if (!text.startsWith('{')) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = metricLineSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

/** Splits a byte stream into lines, skipping any longer than `maxBytes` (bounded memory). */
export class LineSplitter {
  private pending = '';
  private skipping = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxBytes = maxLineBytes,
  ) {}

  push(chunk: string): void {
    let text = this.pending + chunk;
    this.pending = '';
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      if (!this.skipping) this.onLine(text.slice(0, nl));
      this.skipping = false;
      text = text.slice(nl + 1);
    }
    if (text.length > this.maxBytes) this.skipping = true;
    else if (!this.skipping) this.pending = text;
  }

  end(): void {
    if (!this.skipping && this.pending !== '') this.onLine(this.pending);
    this.pending = '';
  }
}

export interface RunOptions {
  command: string;
  args: readonly string[];
  env: Record<string, string>;
  /** Working directory (default: the worker's). */
  cwd?: string;
  signal: AbortSignal;
  /** Each metric line, with its text. */
  onMetric: (metric: MetricLine, line: string) => void;
  killAfterMs: number;
  /** Once spawned: its pid, which is also its process group's. */
  onStart?: (pid: number) => void;
}

export interface RunResult {
  /** null when a signal ended it or it never started. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** It could not be started (ENOENT, EACCES): no retry will help. */
  spawnError: Error | null;
  stderrTail: string;
  /** How it ended when neither an exit code nor a signal says it (a Kubernetes Job past its deadline). */
  reason?: string;
  /** What `stderrTail` is the end of, when not stderr (a pod's log: stdout and stderr together). */
  tailOf?: string;
}

export function runCommand(opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    let stderrTail = '';
    let spawnError: Error | null = null;
    let killTimer: NodeJS.Timeout | undefined;
    const child = spawn(opts.command, [...opts.args], {
      env: opts.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      shell: false,
    });
    if (child.pid !== undefined) opts.onStart?.(child.pid);
    const signalGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        child.kill(sig); // the group is gone already; the child alone, in case
      }
    };
    const stop = (): void => {
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), opts.killAfterMs);
    };
    const lines = new LineSplitter((line) => {
      const metric = parseMetricLine(line);
      if (metric) opts.onMetric(metric, line);
    });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => lines.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-stderrTailBytes);
    });
    child.on('error', (err) => {
      spawnError ??= err;
    });
    if (opts.signal.aborted) stop();
    else opts.signal.addEventListener('abort', stop, { once: true });
    // 'close' comes after the streams ended (so every line is read), and after 'error' when spawning failed.
    child.on('close', (code, sig) => {
      clearTimeout(killTimer);
      opts.signal.removeEventListener('abort', stop);
      lines.end();
      resolve({ exitCode: spawnError ? null : code, signal: sig, spawnError, stderrTail });
    });
  });
}

/** Why a run failed, for the rank's record and the BullMQ job: exit status, then the end of stderr. */
export function failureReason(result: RunResult): string {
  const how = result.spawnError
    ? `could not start: ${result.spawnError.message}`
    : (result.reason ?? (result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`));
  const tail = result.stderrTail.trim();
  return tail === '' ? how : `${how}; ${result.tailOf ?? 'stderr'}: ${tail}`;
}
