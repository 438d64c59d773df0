/** The `local` runner: today's child process (run-command.ts), beside the rank's pulled files. */
import { resolveProgram } from '../builtin-programs.ts';
import { rankEnv, runCommand } from '../run-command.ts';
import type { RankRunner } from './runner.ts';

export const localRunner: RankRunner = {
  kind: 'local',
  filesOnWorker: true,
  modes: ['gang', 'rounds'],
  env: (rank, input) => rankEnv(rank, input),
  run: (spec) =>
    runCommand({
      ...resolveProgram(spec.command, spec.args),
      env: spec.env,
      cwd: spec.cwd,
      signal: spec.signal,
      onMetric: spec.onMetric,
      killAfterMs: spec.killAfterMs,
      onStart: spec.onStart,
    }),
  close: async () => {},
};
