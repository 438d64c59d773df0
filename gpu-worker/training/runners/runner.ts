/**
 * A rank runner: how one rank's (or reduce's) command runs, given its argv and environment, to an exit
 * status, its metric lines streamed as it runs, stopped by an abort with a grace period. Two kinds, chosen
 * by pools[].lanes.training.runner (registry.ts): `local`, a child process of the worker beside the rank's
 * directory; `kubernetes`, a batch/v1 Job whose pod cannot see that directory, so its program moves its
 * own files (README, Training: the Kubernetes runner).
 */
import type { RankJob } from '../../../common/contracts/training.ts';
import type { RankEnvInput, RunOptions, RunResult } from '../run-command.ts';

/** What a rank's run is: the local runner's options (run-command.ts), and which rank it is. */
export interface RankRunSpec extends Omit<RunOptions, 'onStart'> {
  /** Once started: the local process group, or undefined for a remote one. */
  onStart?: (pid: number | undefined) => void;
  /** Which rank this is (names and labels). */
  rank: Pick<RankJob, 'jobId' | 'round' | 'rank' | 'restart'>;
  /** When the training job's deadline passes (epoch ms), if it has one. */
  deadlineAt?: number;
}

export interface RankRunner {
  readonly kind: 'local' | 'kubernetes';
  /** The lane pulls the rank's files into its directory and pushes its output; else the program does. */
  readonly filesOnWorker: boolean;
  /** The modes it can run: gang mode needs rank 0 reachable at the address the worker publishes. */
  readonly modes: readonly RankJob['mode'][];
  /**
   * The command's environment for this rank: built from nothing but what it needs (run-command.ts
   * rankEnv): a few inherited names, the pool's declared variables, the rank's own.
   */
  env(rank: RankJob, input: RankEnvInput): Record<string, string>;
  run(spec: RankRunSpec): Promise<RunResult>;
  close(): Promise<void>;
}
