/**
 * The `local` actuator: the launcher's gpu-worker processes under `npm
 * start`. The launcher owns the processes (launcher/local-fleet.ts) and hands
 * the scheduler this small view of them; the scheduler role never forks
 * anything itself.
 *
 * Scale-in is drain-safe as on Kubernetes: the replicas that go are those
 * still starting (no work yet), then the idlest by their heartbeats' busy
 * slots, and each is asked to stop with SIGTERM (the worker drains within its
 * grace period: gpu-worker/worker.ts).
 */
import type { Actuator, ReplicaCount } from './actuator.ts';

/** The launcher's processes of one pool, as the local actuator sees them. */
export interface LocalFleet {
  /** Processes not asked to stop; of those, the ones that said they are ready. */
  count(pool: string): ReplicaCount;
  /** Worker ids of the pool's processes not asked to stop (undefined id: not ready yet). */
  members(pool: string): ReadonlyArray<{ handle: number; workerId: string | undefined }>;
  /** Starts one more worker process for the pool. */
  start(pool: string): void;
  /** Asks one process to drain and exit (SIGTERM, then SIGKILL after the grace period). */
  stop(handle: number): void;
}

/** Which members go first on scale-in: not yet ready, then fewest busy slots (unknown: 0), then newest. */
export function scaleInOrder(
  members: ReadonlyArray<{ handle: number; workerId: string | undefined }>,
  busy: ReadonlyMap<string, number>,
): number[] {
  const rank = (m: { workerId: string | undefined }): number =>
    m.workerId === undefined ? -1 : (busy.get(m.workerId) ?? 0);
  return [...members].sort((a, b) => rank(a) - rank(b) || b.handle - a.handle).map((m) => m.handle);
}

export function createLocalActuator(fleet: LocalFleet): Actuator {
  return {
    kind: 'local',
    observe: async (pool) => fleet.count(pool),
    async scale(pool, replicas, busy) {
      const { desired } = fleet.count(pool);
      for (let i = desired; i < replicas; i++) fleet.start(pool);
      if (replicas >= desired) return;
      for (const handle of scaleInOrder(fleet.members(pool), busy).slice(0, desired - replicas)) fleet.stop(handle);
    },
    close: async () => undefined,
  };
}
