/**
 * The autoscaling policy of one pool (`pools[].autoscale` in the config) and
 * the autoscaler's own settings (`autoscaler:`). What SREs tune: every knob
 * has its default here, durations are `…Ms`, and the same schema is read by
 * the scheduler leader (scheduler/autoscaler/), by
 * `interfleet autoscale validate` and by the replay
 * (`interfleet autoscale simulate`), so a policy that was replayed is the
 * policy that runs.
 *
 * Defaults follow what the anchors do where they are right (HPA: scale up at
 * once, down after 300 s) and depart where they are wrong for GPUs: scale-up
 * is sized from a forecast over `startupMs`, because a GPU pod takes minutes
 * to be ready and a reactive policy misses every ramp by that long.
 */
import { checkCron } from '../cron-check.ts';
import { z } from 'zod';

const ms = z.number().int().min(0);

/** How fast one direction may move (HPA's `behavior.scaleUp` / `scaleDown`). */
const stepSchema = (stabilizationMs: number, maxStep: number, periodMs: number) =>
  z
    .object({
      /**
       * Up: the lowest recommendation of this window is applied (0: at once). Down: the highest
       * (HPA's 300 s): a dip shorter than the window never removes a replica.
       */
      stabilizationMs: ms.default(stabilizationMs),
      /** At most this many replicas added (removed) per `periodMs`. */
      maxStep: z.number().int().min(1).default(maxStep),
      periodMs: z.number().int().min(1).default(periodMs),
    })
    .prefault({});

/** A schedule floor: at least `minReplicas` from each cron firing for `durationMs` (office hours, a nightly job). */
const floorSchema = z
  .object({
    name: z.string().min(1).max(64),
    cron: z.string().min(1),
    tz: z.string().default('UTC'),
    durationMs: z.number().int().min(1),
    minReplicas: z.number().int().min(0),
  })
  .superRefine((floor, ctx) => void checkCron(floor, ctx));
export type ScheduleFloor = z.infer<typeof floorSchema>;

export const autoscalePolicySchema = z
  .object({
    minReplicas: z.number().int().min(0).default(1),
    maxReplicas: z.number().int().min(1).max(1000).default(4),
    /** Expected time from asking for a replica to its first job (node, image pull, model load). */
    startupMs: ms.default(120_000),
    realtime: z
      .object({
        /** The objective on p99 enqueue-to-first-token; absent: the pool's firstTokenObjectiveMs. */
        objectiveMs: z.number().int().min(1).optional(),
        /** Real-time may use this share of a replica's measured capacity; the rest is headroom (and bulk's). */
        targetUtilization: z.number().gt(0).max(1).default(0.7),
        /** Arrival-rate history the trend is fitted over; the forecast looks `startupMs` ahead. */
        forecastWindowMs: z.number().int().min(1000).default(600_000),
      })
      .prefault({}),
    bulk: z
      .object({
        /** Plan to finish every admitted batch within this share of its time left (margin for error). */
        deadlineSafety: z.number().gt(0).max(1).default(0.8),
      })
      .prefault({}),
    training: z
      .object({
        /** Add replicas so that the gang at the head of the queue fits (false: gangs wait for slots). */
        roomForWaitingGangs: z.boolean().default(true),
      })
      .prefault({}),
    /**
     * What a replica is assumed to do per second until workers have measured it: work units
     * (prompt + completion tokens of a chat; 1 per record of other tasks) with its engine full.
     * Measured capacity replaces it as soon as a saturated replica reports.
     */
    capacityHint: z.number().gt(0).default(1000),
    scaleUp: stepSchema(0, 4, 15_000),
    scaleDown: stepSchema(300_000, 1, 60_000),
    /** With minReplicas 0: no work of any kind in any queue for this long takes the pool to zero. */
    idleToZeroMs: ms.default(600_000),
    floors: z.array(floorSchema).default([]),
    cost: z
      .object({
        /** Price of one replica for an hour (any currency; explain and the replay report it). */
        pricePerReplicaHour: z.number().min(0).default(0),
        /** Spend per hour never exceeded: replicas ≤ maxPerHour / pricePerReplicaHour. */
        maxPerHour: z.number().gt(0).optional(),
      })
      .prefault({}),
    /** Signals older than this (heartbeats, queue counts) are missing: the decision holds. */
    staleAfterMs: z.number().int().min(1).default(15_000),
  })
  .superRefine((p, ctx) => {
    if (p.minReplicas > p.maxReplicas) {
      ctx.addIssue({
        code: 'custom',
        path: ['minReplicas'],
        message: `minReplicas (${p.minReplicas}) is above maxReplicas (${p.maxReplicas})`,
      });
    }
    p.floors.forEach((f, i) => {
      if (f.minReplicas > p.maxReplicas) {
        ctx.addIssue({
          code: 'custom',
          path: ['floors', i, 'minReplicas'],
          message: `floor "${f.name}" asks for ${f.minReplicas} replicas, above maxReplicas (${p.maxReplicas})`,
        });
      }
    });
    if (p.cost.maxPerHour !== undefined && p.cost.pricePerReplicaHour > 0) {
      const affordable = Math.floor(p.cost.maxPerHour / p.cost.pricePerReplicaHour);
      if (affordable < p.minReplicas) {
        ctx.addIssue({
          code: 'custom',
          path: ['cost', 'maxPerHour'],
          message: `maxPerHour ${p.cost.maxPerHour} buys ${affordable} replicas at ${p.cost.pricePerReplicaHour}/h, below minReplicas (${p.minReplicas})`,
        });
      }
    }
    if (p.cost.maxPerHour !== undefined && p.cost.pricePerReplicaHour === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['cost', 'pricePerReplicaHour'],
        message: 'a cost cap (maxPerHour) needs a pricePerReplicaHour',
      });
    }
  });
export type AutoscalePolicyInput = z.input<typeof autoscalePolicySchema>;
/** A pool's policy as parsed; `realtime.objectiveMs` is resolved against the pool by resolvePolicy(). */
export type AutoscalePolicy = z.infer<typeof autoscalePolicySchema>;
/** The policy decide() reads: every optional resolved. */
export type ResolvedPolicy = AutoscalePolicy & {
  realtime: AutoscalePolicy['realtime'] & { objectiveMs: number };
};

export function resolvePolicy(policy: AutoscalePolicy, pool: { firstTokenObjectiveMs: number }): ResolvedPolicy {
  return {
    ...policy,
    realtime: { ...policy.realtime, objectiveMs: policy.realtime.objectiveMs ?? pool.firstTokenObjectiveMs },
  };
}

export const actuatorKinds = ['local', 'kubernetes', 'dry-run'] as const;
export type ActuatorKind = (typeof actuatorKinds)[number];

/** `autoscaler:`: the loop and its actuator (one for the whole fleet). */
export const autoscalerConfigSchema = z
  .object({
    /**
     * Where desired replicas are applied: `local` (npm start's worker processes), `kubernetes` (each
     * pool's gpu-worker Deployment through its scale subresource), `dry-run` (decide, explain and
     * meter, touch nothing). Default: local under npm start, dry-run elsewhere.
     */
    actuator: z.enum(actuatorKinds).optional(),
    /** How often the leader decides. */
    everyMs: z.number().int().min(100).default(5000),
    kubernetes: z
      .object({
        /** Namespace of the gpu-worker Deployments on OKE. */
        namespace: z.string().min(1).default('interfleet'),
        /** Deployment name per pool; `{pool}` is replaced. */
        deployment: z.string().min(1).default('interfleet-gpu-worker-{pool}'),
        /** Path of a kubeconfig (the scheduler on GKE reaching OKE); absent: $KUBECONFIG, then in-cluster, then ~/.kube/config (kubectl's order). */
        kubeconfig: z.string().optional(),
        /** A kubeconfig context; absent: its current-context. */
        context: z.string().optional(),
      })
      .prefault({}),
    keda: z
      .object({
        /** gRPC port of the KEDA External Scaler (externalscaler.proto); -1 (default) turns it off. */
        port: z.number().int().min(-1).max(65535).default(-1),
        host: z.string().default('0.0.0.0'),
      })
      .prefault({}),
  })
  .prefault({});
export type AutoscalerConfig = z.infer<typeof autoscalerConfigSchema>;
