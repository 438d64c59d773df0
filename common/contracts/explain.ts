/**
 * What the scheduler leader writes after each pass so that people can ask
 * why: one record per pool and loop (topology.explainKey), read by the
 * producer's `GET /v1/scheduler/explain` and printed by
 * `interfleet scheduler explain [pool]`. Reasons are the decision functions'
 * typed reasons, carried as strings: the contract does not pin the
 * scheduler's internals, only their shape.
 */
import { z } from 'zod';

const ms = z.number().min(0);

/** The bulk-budget pass (scheduler/budget-loop.ts). */
export const budgetExplanationSchema = z.object({
  pool: z.string(),
  /** When the leader decided (epoch ms). */
  at: z.number().int(),
  epoch: z.number().int(),
  objectiveMs: z.number(),
  quantile: z.number(),
  decision: z.object({
    budget: z.number().int().min(0),
    previous: z.number().int().min(0),
    reason: z.string(),
    preempt: z.number().int().min(0),
    observed: z.object({
      quantileMs: ms.optional(),
      samples: z.number().int().min(0),
      /** Samples over the objective; absent from a scheduler older than the field. */
      overObjective: z.number().min(0).optional(),
      realtimeWaiting: z.number().int().min(0),
      oldestWaitingMs: ms,
      /** The oldest request still in the queue; absent from a scheduler older than the field. */
      oldestQueuedMs: ms.optional(),
      bulkSlots: z.number().int().min(0),
      bulkRunning: z.number().int().min(0),
    }),
  }),
  workers: z.object({ ready: z.number().int().min(0), draining: z.number().int().min(0) }),
  realtime: z.object({ waiting: z.number().int().min(0), active: z.number().int().min(0) }),
  bulk: z.object({
    waiting: z.number().int().min(0),
    active: z.number().int().min(0),
    delayed: z.number().int().min(0),
  }),
});
export type BudgetExplanation = z.infer<typeof budgetExplanationSchema>;

/** The batch admission pass for one pool (scheduler/batch-loop.ts). */
export const admissionExplanationSchema = z.object({
  pool: z.string(),
  at: z.number().int(),
  epoch: z.number().int(),
  /** The pool's window and how much of it was in use when the pass counted. */
  window: z.number().int().min(0),
  queued: z.number().int().min(0).nullable(),
  batches: z.array(
    z.object({
      batchId: z.string(),
      tenant: z.string(),
      priority: z.number().int(),
      status: z.string(),
      /** Chunks admitted so far of the batch's total. */
      admitted: z.number().int().min(0),
      chunks: z.number().int().min(0),
      expiresAt: z.number().int(),
      decision: z.string(),
      reason: z.string(),
      /** Chunks admitted by this pass (admit decisions). */
      count: z.number().int().min(0).optional(),
    }),
  ),
});
export type AdmissionExplanation = z.infer<typeof admissionExplanationSchema>;

/** The training pass for one pool (scheduler/training-loop.ts), while it has open gangs or a quota. */
export const trainingExplanationSchema = z.object({
  pool: z.string(),
  at: z.number().int(),
  epoch: z.number().int(),
  /** pools[].trainingQuota; null: every slot. */
  quota: z.number().int().min(0).nullable(),
  /** After this pass's admissions. */
  slots: z.object({
    /** Training slots of the pool's ready workers. */
    total: z.number().int().min(0),
    /** Ranks of admitted gangs not yet ended. */
    held: z.number().int().min(0),
    /** What the next gang may take: min(quota, total) less what is used (held, or running as heartbeats say). */
    free: z.number().int().min(0),
  }),
  /** Running gangs, then waiting ones in admission order. */
  gangs: z.array(
    z.object({
      jobId: z.string(),
      tenant: z.string(),
      priority: z.number().int(),
      /** Ranks: slots it holds or needs at once. */
      size: z.number().int().min(1),
      round: z.number().int().min(1),
      rounds: z.number().int().min(1),
      /** Its status when the pass read it (queued or running). */
      state: z.string(),
      /** This pass's decision (admit, hold); null for a gang admitted by an earlier pass. */
      decision: z.string().nullable(),
      reason: z.string().nullable(),
      /** Slots free when it was held. */
      free: z.number().int().min(0).optional(),
    }),
  ),
});
export type TrainingExplanation = z.infer<typeof trainingExplanationSchema>;

/** One autoscaling decision, as the explain record keeps it (scheduler/autoscaler/autoscale-loop.ts). */
const autoscaleDecisionSchema = z.object({
  at: z.number().int(),
  desired: z.number().int().min(0),
  previous: z.number().int().min(0),
  recommendation: z.number().int().min(0),
  reason: z.string(),
});

/** The autoscaling pass for one pool with a policy (scheduler/autoscaler/autoscale-loop.ts). */
export const autoscaleExplanationSchema = z.object({
  pool: z.string(),
  at: z.number().int(),
  epoch: z.number().int(),
  /** local, kubernetes or dry-run. */
  actuator: z.string(),
  replicas: z.object({
    desired: z.number().int().min(0),
    ready: z.number().int().min(0),
    min: z.number().int().min(0),
    max: z.number().int().min(0),
  }),
  /** What this pass decided and why; `missing` says which signals were not there when it held. */
  decision: autoscaleDecisionSchema.extend({ missing: z.string().optional() }),
  /** Replicas each part of the demand asks for (costCap: the cap as replicas, null when none). */
  parts: z.object({
    realtime: z.number().int().min(0),
    bulk: z.number().int().min(0),
    training: z.number().int().min(0),
    running: z.number().int().min(0),
    floor: z.number().int().min(0),
    costCap: z.number().int().min(0).nullable(),
  }),
  realtime: z.object({
    nowUnitsPerSecond: z.number().min(0),
    forecastUnitsPerSecond: z.number().min(0),
    objectiveMs: z.number(),
    firstTokenMs: ms.nullable(),
  }),
  capacity: z.object({ unitsPerSecond: z.number().min(0), source: z.string() }),
  bulk: z.object({ neededUnitsPerSecond: z.number().min(0), tightest: z.string().nullable() }),
  /**
   * What the KEDA external scaler and /metrics serve for the pool (null: nothing known yet this term).
   * A standby scheduler serves it from this record (scheduler/autoscaler/standby-demand.ts); optional
   * so that records of an older leader still parse.
   */
  served: z
    .object({ desired: z.number().int().min(0), active: z.boolean() })
    .nullable()
    .optional(),
  costPerHour: z.number().min(0),
  /** Why the actuator did not apply the decision, if it did not. */
  actuatorError: z.string().optional(),
  /** The last decisions that changed something (newest last). */
  history: z.array(autoscaleDecisionSchema),
});
export type AutoscaleExplanation = z.infer<typeof autoscaleExplanationSchema>;

/** `GET /v1/scheduler/explain[?pool=]`: every pool (or one), null where the leader has written nothing lately. */
export const schedulerExplainSchema = z.object({
  object: z.literal('scheduler.explain'),
  /** When the producer read the records, to judge their age. */
  now: z.number().int(),
  pools: z.array(
    z.object({
      pool: z.string(),
      budget: budgetExplanationSchema.nullable(),
      admission: admissionExplanationSchema.nullable(),
      // Defaulted: a newer client still reads a producer that predates training records.
      training: trainingExplanationSchema.nullable().default(null),
      autoscale: autoscaleExplanationSchema.nullable().default(null),
    }),
  ),
});
export type SchedulerExplain = z.infer<typeof schedulerExplainSchema>;
