/**
 * The one place an actuator kind becomes an actuator. The Kubernetes one is
 * imported only when chosen: @kubernetes/client-node costs a process about
 * 400 ms and 77 MiB to load (measured for gpu-worker/pod-deletion-cost.ts),
 * which `npm start` and dry-run schedulers need not pay.
 */
import type { ActuatorKind, AutoscalerConfig } from '../../../common/autoscale/policy.ts';
import type { Logger } from '../../../common/logger.ts';
import type { RedisClient } from '../../../common/redis.ts';
import { ActuatorError, type Actuator } from './actuator.ts';
import { createDryRunActuator } from './dry-run.ts';
import { createLocalActuator, type LocalFleet } from './local.ts';

export interface ActuatorDeps {
  redis: RedisClient;
  prefix: string;
  logger: Logger;
  now: () => number;
  /** The launcher's worker processes; present only under `npm start`. */
  localFleet?: LocalFleet;
}

/** The configured kind, else `local` under the launcher and `dry-run` elsewhere. */
function actuatorKind(configured: ActuatorKind | undefined, deps: Pick<ActuatorDeps, 'localFleet'>): ActuatorKind {
  return configured ?? (deps.localFleet ? 'local' : 'dry-run');
}

export async function createActuator(cfg: AutoscalerConfig, deps: ActuatorDeps): Promise<Actuator> {
  const kind = actuatorKind(cfg.actuator, deps);
  switch (kind) {
    case 'dry-run':
      return createDryRunActuator();
    case 'local':
      if (!deps.localFleet) {
        throw new ActuatorError(
          'autoscaler.actuator local drives the worker processes of `npm start` (the launcher); a scheduler run on its own has none: use kubernetes or dry-run',
          false,
        );
      }
      return createLocalActuator(deps.localFleet);
    case 'kubernetes': {
      const { createKubernetesActuator } = await import('./kubernetes.ts');
      return createKubernetesActuator(cfg.kubernetes, { logger: deps.logger });
    }
  }
}
