/**
 * Training gangs: the job definition the API takes, the spec stored in Redis,
 * the `train.<pool>` job of one rank of one round, a rank's record, and the
 * metric lines a training command prints. A gang of `workers` ranks runs
 * `rounds` times; each round is admitted whole (scheduler/gang-admission.ts)
 * and every rank runs the same command with its rank in its environment.
 */
import { z } from 'zod';
import { submissionPrioritySchema } from './api.ts';
// The URI module alone: the client SDK may import contracts and must not load the cloud SDKs.
import { parseStorageUri } from '../storage/uri.ts';

/** Largest gang and most rounds one job may ask for: bounds on the per-rank records kept in Redis. */
export const maxGangSize = 256;
export const maxRounds = 1000;

/** A storage URI field, with a message that names the field when it is missing. */
const uriField = (name: string) =>
  z.string({ error: `${name} is required: a storage URI (file://, gs:// or oci://)` }).superRefine((uri, ctx) => {
    try {
      parseStorageUri(uri);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
    }
  });

/** `POST /v1/training/jobs`. Unknown fields are refused by name. */
export const trainingJobBodySchema = z.strictObject(
  {
    /** The pool whose training lanes run it. */
    pool: z.string({ error: 'pool is required: the name of a configured pool' }).min(1, 'pool must not be empty'),
    tenant: z.string().min(1, 'tenant must not be empty').max(64, 'tenant is at most 64 characters').default('default'),
    /** The program, run without a shell (an absolute path, or a name looked up in the worker's PATH). */
    command: z
      .string({ error: 'command is required: the program each rank runs' })
      .min(1, 'command must not be empty')
      .max(1024, 'command is at most 1024 characters')
      .refine((c) => !c.includes('\0'), 'command may not contain NUL'),
    /** Its arguments, passed as they are (no shell: nothing is expanded or split). */
    args: z
      .array(
        z
          .string({ error: 'args are strings' })
          .max(8192, 'each argument is at most 8192 characters')
          .refine((a) => !a.includes('\0'), 'arguments may not contain NUL'),
        { error: 'args must be an array of strings' },
      )
      .max(256, 'at most 256 args')
      .default([]),
    /** Where the command reads its data (INTERFLEET_DATA_URI). */
    data_uri: uriField('data_uri'),
    /** Prefix under which each rank checkpoints, `<prefix>round-<r>/rank-<k>/` (INTERFLEET_CHECKPOINT_URI). */
    checkpoint_uri: uriField('checkpoint_uri'),
    /** Handed to the command as JSON (INTERFLEET_PARAMS); at most 16 KiB once serialised. */
    params: z
      .record(z.string(), z.unknown(), { error: 'params must be a JSON object' })
      .refine((p) => JSON.stringify(p).length <= 16_384, 'params is at most 16 KiB as JSON')
      .default({}),
    /** Gang size N: the ranks that must run at once. */
    workers: z
      .number({ error: 'workers must be a number' })
      .int('workers must be an integer')
      .min(1, 'workers is at least 1')
      .max(maxGangSize, `workers is at most ${maxGangSize}`),
    rounds: z
      .number({ error: 'rounds must be a number' })
      .int('rounds must be an integer')
      .min(1, 'rounds is at least 1')
      .max(maxRounds, `rounds is at most ${maxRounds}`)
      .default(1),
    /** Higher first among a pool's waiting gangs; then older first. */
    priority: submissionPrioritySchema,
    /** Runs a rank may take before it fails for good (and its gang with it). */
    max_attempts: z
      .number({ error: 'max_attempts must be a number' })
      .int('max_attempts must be an integer')
      .min(1, 'max_attempts is 1 to 10')
      .max(10, 'max_attempts is 1 to 10')
      .default(1),
  },
  {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unsupported field(s): ${iss.keys.join(', ')}` : undefined),
  },
);
export type TrainingJobBody = z.output<typeof trainingJobBodySchema>;
export type TrainingJobParams = z.input<typeof trainingJobBodySchema>;

export const trainingJobIdSchema = z
  .string()
  .regex(/^train_[0-9a-f]{20}$/, 'not a training job id (train_ followed by 20 hex)');

/** What was asked for, as stored; fixed at creation. */
export const trainingSpecSchema = z.object({
  id: trainingJobIdSchema,
  pool: z.string(),
  tenant: z.string(),
  command: z.string(),
  args: z.array(z.string()),
  dataUri: z.string(),
  /** Ends with `/`. */
  checkpointPrefix: z.string(),
  params: z.record(z.string(), z.unknown()),
  workers: z.number().int().min(1),
  rounds: z.number().int().min(1),
  priority: z.number().int(),
  attempts: z.number().int().min(1),
  createdAt: z.number().int(),
});
export type TrainingSpec = z.infer<typeof trainingSpecSchema>;

/** Where rank `rank` of round `round` checkpoints. */
export function checkpointUriFor(prefix: string, round: number, rank: number): string {
  return `${prefix}round-${round}/rank-${rank}/`;
}

export const RANK_JOB_NAME = 'rank';

/** One rank of one round on `train.<pool>`: what the worker needs, no more. */
export const rankJobSchema = z.object({
  jobId: trainingJobIdSchema,
  pool: z.string(),
  round: z.number().int().min(1),
  rank: z.number().int().min(0),
  worldSize: z.number().int().min(1),
  command: z.string().min(1),
  args: z.array(z.string()),
  dataUri: z.string(),
  checkpointUri: z.string(),
  /** The same rank's checkpoint of the round before (null in round 1): where it resumes from. */
  previousCheckpointUri: z.string().nullable(),
  params: z.record(z.string(), z.unknown()),
});
export type RankJob = z.infer<typeof rankJobSchema>;

/** The `train.<pool>` job of a rank (validated): what admission adds. */
export function rankJobFor(spec: TrainingSpec, round: number, rank: number): RankJob {
  return rankJobSchema.parse({
    jobId: spec.id,
    pool: spec.pool,
    round,
    rank,
    worldSize: spec.workers,
    command: spec.command,
    args: spec.args,
    dataUri: spec.dataUri,
    checkpointUri: checkpointUriFor(spec.checkpointPrefix, round, rank),
    previousCheckpointUri: round > 1 ? checkpointUriFor(spec.checkpointPrefix, round - 1, rank) : null,
    params: spec.params,
  });
}

/** A metric line: a JSON object on the command's stdout with a `metric` name (and usually a value). */
export const metricLineSchema = z.looseObject({
  metric: z.string().min(1).max(128),
  value: z.number().optional(),
  step: z.number().int().optional(),
});
export type MetricLine = z.infer<typeof metricLineSchema>;

/** A rank's run in one round: started, then settled once. */
export const rankRecordSchema = z.object({
  state: z.enum(['running', 'succeeded', 'failed']),
  worker: z.string(),
  startedAt: z.number().int(),
  endedAt: z.number().int().nullable().default(null),
  exitCode: z.number().int().nullable().default(null),
  /** Why it failed: the exit code and the end of stderr, or what else went wrong. */
  reason: z.string().nullable().default(null),
  /** Last value of each metric it printed (at most 64 names). */
  metrics: z.record(z.string(), z.number()).default({}),
  checkpointUri: z.string(),
});
export type RankRecord = z.infer<typeof rankRecordSchema>;
/** A record as written: fields with defaults may be left out. */
export type RankRecordInput = z.input<typeof rankRecordSchema>;
