/**
 * What the training API answers, as zod schemas the client parses every body
 * with: a training job (`toApiTrainingJob` in producer/routes/training.ts)
 * and a job's rank logs (producer/routes/training-logs.ts). Like wire.ts,
 * unknown fields are stripped, not rejected, so an older client keeps
 * working against a newer server.
 */
import { z } from 'zod';
import { trainingStatuses } from '../../common/training/training-state.ts';
import {
  trainedModelSchema,
  trainingManifestSchema,
  webhookDeliverySchema,
} from '../../common/contracts/trained-models.ts';

const seconds = z.number().nullable();

/** One rank's run in one round. */
export const apiTrainingRankSchema = z.object({
  round: z.number().int(),
  rank: z.number().int(),
  status: z.enum(['running', 'succeeded', 'failed']),
  worker: z.string(),
  exit_code: z.number().int().nullable(),
  reason: z.string().nullable(),
  /** Last value of each metric it printed. */
  metrics: z.record(z.string(), z.number()),
  checkpoint_uri: z.string(),
  started_at: seconds,
  ended_at: seconds,
});

/** `GET /v1/training/jobs/:id` (and what create and cancel answer). Times are UNIX seconds. */
export const apiTrainingJobSchema = z.object({
  id: z.string(),
  object: z.literal('training.job'),
  pool: z.string(),
  tenant: z.string(),
  status: z.enum(trainingStatuses),
  /** The round waiting or running; the last one once final. */
  round: z.number().int(),
  rounds: z.number().int(),
  workers: z.number().int(),
  priority: z.number().int(),
  max_attempts: z.number().int(),
  /** Gang mode: restarts allowed and made so far (absent from older servers: 0), and why the last one was. */
  max_restarts: z.number().int().default(0),
  restarts: z.number().int().default(0),
  restart_reason: z.string().nullable().default(null),
  /** When the job must be over (UNIX seconds); null: no deadline. */
  deadline: seconds.default(null),
  command: z.string(),
  args: z.array(z.string()),
  /** `rounds` mode: the user's reduce program; null (or absent, from older servers): the built-in average. */
  reduce: z
    .object({ command: z.string(), args: z.array(z.string()) })
    .nullable()
    .default(null),
  data_uri: z.array(z.string()),
  shard: z.enum(['lines', 'objects', 'none']),
  mode: z.enum(['gang', 'rounds']),
  init_uri: z.string().nullable(),
  checkpoint_uri: z.string(),
  /** The model each finished round's reduce wrote (`rounds` mode), latest last. */
  models: z.array(z.object({ round: z.number().int(), uri: z.string() })),
  params: z.record(z.string(), z.unknown()),
  /** Why the scheduler holds it (queued only). */
  waiting_reason: z.string().nullable(),
  /** Why it failed or was cancelled. */
  error: z.string().nullable(),
  created_at: seconds,
  admitted_at: seconds,
  ended_at: seconds,
  // The results fields default to null: a server from before them leaves them out.
  eval_uri: z.string().nullable().default(null),
  model_name: z.string().nullable().default(null),
  webhook_url: z.string().nullable().default(null),
  /** The job's manifest, once written after it ended (metrics per round, evaluation, artifact and checksum). */
  manifest: trainingManifestSchema.nullable().default(null),
  manifest_error: z.string().nullable().default(null),
  /** The completion webhook's delivery record. */
  webhook: webhookDeliverySchema.nullable().default(null),
  /** Every rank that started, round then rank order. */
  ranks: z.array(apiTrainingRankSchema),
});
export type ApiTrainingJob = z.infer<typeof apiTrainingJobSchema>;
export type ApiTrainingRank = z.infer<typeof apiTrainingRankSchema>;

/** `GET /v1/training/jobs/:id/logs`: the last `tail` log lines of each rank of one round. */
export const apiTrainingLogsSchema = z.object({
  object: z.literal('training.logs'),
  id: z.string(),
  round: z.number().int(),
  tail: z.number().int(),
  ranks: z.array(
    z.object({
      rank: z.number().int(),
      /** The rank's state in that round; null before it started. */
      status: z.enum(['running', 'succeeded', 'failed']).nullable(),
      /** Every line it logged in that round (its attempts together). */
      total_lines: z.number().int(),
      /** The last `tail` of them, oldest first. */
      lines: z.array(z.string()),
    }),
  ),
});
export type ApiTrainingLogs = z.infer<typeof apiTrainingLogsSchema>;

/** `GET /v1/trained-models/:name`: a registered model. */
export const apiTrainedModelSchema = trainedModelSchema.extend({ object: z.literal('trained_model') });
export type ApiTrainedModel = z.infer<typeof apiTrainedModelSchema>;
export const apiTrainedModelListSchema = z.object({ object: z.literal('list'), data: z.array(apiTrainedModelSchema) });
