/**
 * A round's reduce (`rounds` mode) inside its working directory: every rank's
 * output is pulled from storage into `inputs/rank-<k>/`, then combined into
 * `output/`, which the lane uploads create-only as the round's model.
 *
 * - Without a reduce program: the built-in average of float32 tensors
 *   (builtin/average-tensors.ts).
 * - With the job's `reduce: { command, args }`: the program runs as a rank's
 *   does (run-command.ts: no shell, its own process group, the worker's
 *   environment filtered, SIGTERM then SIGKILL on a stop, metric lines to the
 *   job's log), with the round's starting checkpoint in `init/` and the
 *   variables of reduceEnv. A non-zero exit fails the job for good with the
 *   exit code and stderr's end: given the same inputs it fails the same way.
 *
 * Weights go through storage and the local disk only, never Redis.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UnrecoverableError } from 'bullmq';
import { programAllowed } from '../../common/config.ts';
import type { MetricLine, ReduceJob } from '../../common/contracts/training.ts';
import type { Storage } from '../../common/storage/index.ts';
import { averageModelDirs } from './builtin/average-tensors.ts';
import { resolveProgram } from './builtin-programs.ts';
import { writeOwner } from './orphans.ts';
import { pullPrefix, type RankDirs } from './rank-files.ts';
import { baseEnv, failureReason, runCommand, type BaseEnvInput } from './run-command.ts';

export interface ReduceStepDeps {
  storage: Storage;
  /** The programs a reduce's command may name (pools[].lanes.training.programs). */
  programs: readonly string[];
  /** The worker's environment and the pool's declared variables (filtered as a rank's are). */
  env: Omit<BaseEnvInput, 'work'>;
  /** After SIGTERM, how long the program has before SIGKILL. */
  killAfterMs: number;
  /** Each metric line the program prints. */
  onMetric: (metric: MetricLine, line: string) => void;
}

/** The directories a reduce program sees: the rank's layout, with `inputs/` holding a directory per rank. */
export interface ReduceDirs {
  work: string;
  inputs: string;
  init: string;
  output: string;
}

/**
 * The reduce program's environment: as a rank's, built from nothing but what it needs (baseEnv: a
 * few inherited names, the pool's declared variables, HOME and TMPDIR in its directory), then its directories (rank order in
 * INTERFLEET_INPUT_DIRS, a JSON array), the round, how many ranks, where its output goes and the
 * hyperparameters, under the names a rank's command gets for the same things.
 */
export function reduceEnv(
  reduce: ReduceJob,
  base: Omit<BaseEnvInput, 'work'>,
  dirs: ReduceDirs,
  inputDirs: readonly string[],
): Record<string, string> {
  const params = JSON.stringify(reduce.params);
  return {
    ...baseEnv({ ...base, work: dirs.work }),
    INTERFLEET_WORK_DIR: dirs.work,
    INTERFLEET_INPUTS_DIR: dirs.inputs,
    INTERFLEET_INPUT_DIRS: JSON.stringify(inputDirs),
    INTERFLEET_INIT_DIR: dirs.init,
    INTERFLEET_OUTPUT_DIR: dirs.output,
    INTERFLEET_INPUT_URIS: JSON.stringify(reduce.inputs),
    INTERFLEET_INIT_URI: reduce.initUri ?? '',
    INTERFLEET_CHECKPOINT_URI: reduce.outputUri,
    INTERFLEET_ROUND: String(reduce.round),
    INTERFLEET_WORLD_SIZE: String(reduce.inputs.length),
    INTERFLEET_JOB_ID: reduce.jobId,
    INTERFLEET_HYPERPARAMS: params,
    INTERFLEET_PARAMS: params,
  };
}

/** Every rank's output into `<inputs>/rank-<k>/`, rank order; an empty one fails the reduce for good. */
export async function pullReduceInputs(
  storage: Storage,
  reduce: ReduceJob,
  inputsDir: string,
  signal: AbortSignal,
): Promise<string[]> {
  const dirs: string[] = [];
  for (const [rank, uri] of reduce.inputs.entries()) {
    const dir = join(inputsDir, `rank-${rank}`);
    await mkdir(dir, { recursive: true });
    if ((await pullPrefix(storage, uri, dir, signal)) === 0) {
      throw new UnrecoverableError(`reduce of round ${reduce.round}: rank ${rank}'s checkpoint at ${uri} is empty`);
    }
    dirs.push(dir);
  }
  return dirs;
}

/**
 * Reduces the round into `dirs.output` (made by makeRankDirs): the built-in average, or the job's
 * reduce program. Throws on failure: UnrecoverableError where a retry cannot help (not allowed, a
 * non-zero exit, nothing written), the abort's reason when stopped.
 */
export async function reduceRound(
  reduce: ReduceJob,
  dirs: RankDirs,
  deps: ReduceStepDeps,
  signal: AbortSignal,
): Promise<{ by: 'average' | 'program' }> {
  const what = `reduce of round ${reduce.round}`;
  const { program } = reduce;
  // Checked here as well as by the API: the pool's list may have changed since the job was submitted.
  if (program && !programAllowed(deps.programs, program.command)) {
    throw new UnrecoverableError(`${what}: command '${program.command}' is not among this pool's training programs`);
  }
  const reduceDirs: ReduceDirs = {
    work: dirs.work,
    inputs: join(dirs.work, 'inputs'),
    init: dirs.init,
    output: dirs.output,
  };
  const inputDirs = await pullReduceInputs(deps.storage, reduce, reduceDirs.inputs, signal);
  if (!program) {
    await averageModelDirs(inputDirs, dirs.output);
    return { by: 'average' };
  }

  const init = reduce.initUri === null ? 0 : await pullPrefix(deps.storage, reduce.initUri, dirs.init, signal);
  if (init === 0 && reduce.initUri !== null && reduce.round > 1) {
    throw new Error(`the model of round ${reduce.round - 1} is missing at ${reduce.initUri}`);
  }
  const result = await runCommand({
    ...resolveProgram(program.command, program.args),
    env: reduceEnv(reduce, deps.env, reduceDirs, inputDirs),
    cwd: dirs.work,
    signal,
    onMetric: deps.onMetric,
    killAfterMs: deps.killAfterMs,
    // Recorded so that a later lane on this host can sweep the program if this worker dies (orphans.ts).
    onStart: (group) => void writeOwner(dirs.work, { worker: process.pid, group }).catch(() => undefined),
  });
  // Stopped first, whatever the exit status: a program that exits 0 on SIGTERM may not have finished.
  signal.throwIfAborted();
  if (result.exitCode !== 0) throw new UnrecoverableError(`${what}: reduce program ${failureReason(result)}`);
  if ((await readdir(dirs.output)).length === 0) {
    throw new UnrecoverableError(`${what}: the reduce program exited 0 but wrote nothing to its output directory`);
  }
  return { by: 'program' };
}
