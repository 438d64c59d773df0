/**
 * The `dry-run` actuator: decides, explains and meters, touches nothing. What
 * a pool has is what its heartbeats say (live workers not draining; ready
 * ones), so that decisions do not compound on replicas that were never
 * added. This is also the mode for teams whose KEDA or HPA owns
 * `spec.replicas`: they read the decision from the external scaler or from
 * /metrics (interfleet_autoscaler_desired_replicas) and apply it themselves.
 */
import type { Actuator, ReplicaCount } from './actuator.ts';

export function createDryRunActuator(): Actuator {
  return {
    kind: 'dry-run',
    async observe(_pool, heartbeats): Promise<ReplicaCount> {
      const live = await heartbeats;
      return {
        desired: live.filter((w) => w.state !== 'draining').length,
        ready: live.filter((w) => w.state === 'ready').length,
      };
    },
    scale: async () => undefined,
    close: async () => undefined,
  };
}
