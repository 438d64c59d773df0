/**
 * Results of a training job on the GKE side: the manifest written beside its
 * checkpoints when it ends, the completion webhook's delivery record, and the
 * registry of trained models by name (what `sentiment` requests may name).
 */
import { z } from 'zod';

/** A trained model's name: what a job registers (`model_name`) and a request names (`input.model`). */
export const trainedModelNameSchema = z
  .string({ error: 'a model name is a string' })
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,63}$/,
    'a model name is 1 to 64 lower-case letters, digits, . _ or -, starting with a letter or digit',
  );

/** Evaluation of the final model on the job's held-out split (`eval_uri`), by a worker. */
export const evaluationSchema = z.object({
  uri: z.string(),
  /** Lines scored (blank, malformed and unknown-label lines are counted apart). */
  examples: z.number().int().min(0),
  skipped: z.number().int().min(0),
  accuracy: z.number().min(0).max(1),
  /** Mean cross-entropy of the true label. */
  loss: z.number().min(0),
  /** The split's most frequent label and the accuracy of always answering it (the floor to beat). */
  majority_class: z.string(),
  majority_class_accuracy: z.number().min(0).max(1),
  /** confusion[true][predicted] = count. */
  confusion: z.record(z.string(), z.record(z.string(), z.number().int().min(0))),
});
export type Evaluation = z.infer<typeof evaluationSchema>;

/** The final model's files in storage and their checksum (model-checksum.ts says how it is computed). */
export const artifactSchema = z.object({
  uri: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  files: z.array(z.object({ path: z.string(), bytes: z.number().int().min(0), sha256: z.string() })),
  /** The model's classes (built-in text model format), when it is one. */
  classes: z.array(z.string()).nullable(),
});
export type Artifact = z.infer<typeof artifactSchema>;

/** One round as the ranks reported it. */
export const roundSummarySchema = z.object({
  round: z.number().int().min(1),
  ranks: z.number().int().min(0),
  ranks_succeeded: z.number().int().min(0),
  /** Earliest rank start to latest rank end (UNIX seconds), and the time between them in ms. */
  started_at: z.number().int().nullable(),
  ended_at: z.number().int().nullable(),
  duration_ms: z.number().int().min(0).nullable(),
  /** Mean over the ranks of each metric's last value. */
  metrics: z.record(z.string(), z.number()),
  /** Each rank's last value of each metric, by rank. */
  rank_metrics: z.array(z.record(z.string(), z.number())),
});
export type RoundSummary = z.infer<typeof roundSummarySchema>;

/** `<checkpoint_uri>manifest.json`, and `manifest` in GET /v1/training/jobs/:id. */
export const trainingManifestSchema = z.object({
  object: z.literal('training.manifest'),
  job_id: z.string(),
  pool: z.string(),
  status: z.enum(['succeeded', 'failed', 'cancelled']),
  error: z.string().nullable(),
  mode: z.enum(['gang', 'rounds']),
  workers: z.number().int(),
  rounds: z.number().int(),
  rounds_completed: z.number().int().min(0),
  created_at: z.number().int(),
  ended_at: z.number().int().nullable(),
  per_round: z.array(roundSummarySchema),
  artifact: artifactSchema.nullable(),
  evaluation: evaluationSchema.nullable(),
  /** Why there is no evaluation although eval_uri was named (not the built-in format, unreadable split). */
  evaluation_error: z.string().nullable(),
  /** The name the model was registered under (null: none asked, or the job did not succeed). */
  model_name: z.string().nullable(),
  manifest_uri: z.string(),
  written_at: z.number().int(),
});
export type TrainingManifest = z.infer<typeof trainingManifestSchema>;

/** The completion webhook's delivery, as the job shows it. */
export const webhookDeliverySchema = z.object({
  url: z.string(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int().min(0),
  /** HTTP status of the last attempt (null: no answer). */
  last_status_code: z.number().int().nullable(),
  last_error: z.string().nullable(),
  /** When the next attempt is due (UNIX ms), while pending. */
  next_attempt_at: z.number().int().nullable(),
  delivered_at: z.number().int().nullable(),
});
export type WebhookDelivery = z.infer<typeof webhookDeliverySchema>;

/** A registered model: what serving needs (where, which bytes) and what it scored. */
export const trainedModelSchema = z.object({
  name: trainedModelNameSchema,
  uri: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  job_id: z.string(),
  pool: z.string(),
  classes: z.array(z.string()).nullable(),
  created_at: z.number().int(),
  evaluation: z
    .object({ uri: z.string(), accuracy: z.number(), examples: z.number().int(), majority_class_accuracy: z.number() })
    .nullable(),
});
export type TrainedModel = z.infer<typeof trainedModelSchema>;
