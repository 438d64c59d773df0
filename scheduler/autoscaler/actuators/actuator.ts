/**
 * Where the autoscaler's decisions land: one small interface, one registry
 * (registry.ts), no registration by import side effect. An actuator knows
 * how many replicas a pool has been given and how many are ready; it never
 * decides anything (decide.ts does).
 *
 * Scale-in is drain-safe by contract: an actuator removes replicas only by
 * asking them to stop (SIGTERM and its grace period), idlest first, so a
 * removed worker takes no new work, finishes short work, yields running
 * chunks at a record and hands training ranks back (gpu-worker/worker.ts).
 */
import type { ActuatorKind } from '../../../common/autoscale/policy.ts';
import type { Heartbeat } from '../../../common/contracts/heartbeat.ts';

export interface ReplicaCount {
  /** Replicas the pool has been given (a Deployment's spec.replicas; local processes not stopping). */
  desired: number;
  /** Of those, replicas ready to take work. */
  ready: number;
}

/** Thrown for anything an actuator cannot do (API refused, Deployment missing); the loop holds and retries. */
export class ActuatorError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ActuatorError';
  }
}

export interface Actuator {
  readonly kind: ActuatorKind;
  /**
   * What the pool has now. `live` is the pool's live heartbeats, which the loop reads in the same
   * pass anyway: an actuator that counts replicas from them (dry-run) uses those rather than read
   * them again; the others ignore it.
   */
  observe(pool: string, live: Promise<readonly Heartbeat[]>): Promise<ReplicaCount>;
  /**
   * Asks for `replicas`. Scaling in stops the idlest replicas first: `busy` gives the busy slots of each
   * live worker by worker id (from heartbeats), for actuators that pick which replica goes.
   */
  scale(pool: string, replicas: number, busy: ReadonlyMap<string, number>): Promise<void>;
  close(): Promise<void>;
}
