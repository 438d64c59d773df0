/** The rank runners, by pools[].lanes.training.runner.kind: the one place a kind becomes a runner. */
import type { TrainingRunnerConfig } from '../../../common/config.ts';
import type { Logger } from '../../../common/logger.ts';
import { createKubernetesRunner } from './kubernetes-job.ts';
import { localRunner } from './local.ts';
import type { RankRunner } from './runner.ts';

export interface RunnerDeps {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

export function createRankRunner(cfg: TrainingRunnerConfig, deps: RunnerDeps): RankRunner {
  switch (cfg.kind) {
    case 'local':
      return localRunner;
    case 'kubernetes':
      // The config's refinement guarantees it; checked again for a config built by hand.
      if (!cfg.kubernetes) throw new Error("runner kind 'kubernetes' needs runner.kubernetes");
      return createKubernetesRunner(cfg.kubernetes, deps);
  }
}
