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
import { trainedModelNameSchema } from './trained-models.ts';

/** Largest gang and most rounds one job may ask for: bounds on the per-rank records kept in Redis. */
export const maxGangSize = 256;
export const maxRounds = 1000;
export const maxRestarts = 100;

/** A storage URI field, with a message that names the field when it is missing. */
/** Its JSON length; Infinity when nested too deep to serialise (JSON.stringify throws RangeError: a 500, not a 400). */
function jsonLength(value: unknown): number {
  try {
    return JSON.stringify(value).length;
  } catch {
    return Infinity;
  }
}

const uriField = (name: string) =>
  z.string({ error: `${name} is required: a storage URI (file://, gs:// or oci://)` }).superRefine((uri, ctx) => {
    try {
      parseStorageUri(uri);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
    }
  });

/** A program to run without a shell: a rank's command or a reduce's. */
const commandField = (what: string) =>
  z
    .string({ error: `command is required: ${what}` })
    .min(1, 'command must not be empty')
    .max(1024, 'command is at most 1024 characters')
    .refine((c) => !c.includes('\0'), 'command may not contain NUL');
/** Its arguments, passed as they are (no shell: nothing is expanded or split). */
const argsField = z
  .array(
    z
      .string({ error: 'args are strings' })
      .max(8192, 'each argument is at most 8192 characters')
      .refine((a) => !a.includes('\0'), 'arguments may not contain NUL'),
    { error: 'args must be an array of strings' },
  )
  .max(256, 'at most 256 args')
  .default([]);

/** `POST /v1/training/jobs`. Unknown fields are refused by name. */
const trainingJobFields = z.strictObject(
  {
    /** The pool whose training lanes run it. */
    pool: z.string({ error: 'pool is required: the name of a configured pool' }).min(1, 'pool must not be empty'),
    /** The tenant charged; absent: the API key's (only an admin key names another; auth off: `default`). */
    tenant: z.string().min(1, 'tenant must not be empty').max(64, 'tenant is at most 64 characters').optional(),
    /** The program, run without a shell (an absolute path, or a name looked up in the worker's PATH). */
    command: commandField('the program each rank runs'),
    /** Its arguments, passed as they are (no shell: nothing is expanded or split). */
    args: argsField,
    /**
     * `rounds` mode: the program that combines a round's rank outputs into its model, run as a rank
     * is (same allow-list, same runner); absent, the built-in average of float32 tensors.
     */
    reduce: z
      .strictObject(
        { command: commandField('the program the reduce runs'), args: argsField },
        {
          error: (iss) =>
            iss.code === 'unrecognized_keys'
              ? `unsupported field(s): ${iss.keys.join(', ')}`
              : 'reduce must be an object: { command, args }',
        },
      )
      .optional(),
    /**
     * Where the job's data is: one storage URI or several (1 to 64); a URI ending in `/` is a prefix
     * (every object under it). Each rank's shard is pulled into its working directory before its
     * program starts (see `shard`); the first URI is also in INTERFLEET_DATA_URI.
     */
    data_uri: z.union(
      [
        uriField('data_uri'),
        z
          .array(uriField('data_uri'))
          .min(1, 'data_uri lists at least one URI')
          .max(64, 'data_uri lists at most 64 URIs'),
      ],
      {
        error: (iss) =>
          iss.input === undefined
            ? 'data_uri is required: a storage URI (file://, gs:// or oci://)'
            : 'data_uri must be a storage URI or an array of them',
      },
    ),
    /**
     * How the data is split between ranks: `lines` (default) gives rank k the k-th of N byte ranges
     * of every object, cut on line boundaries; `objects` gives rank k every N-th object (by URI
     * order); `none` pulls nothing (the program reads INTERFLEET_DATA_URI itself).
     */
    shard: z.enum(['lines', 'objects', 'none'], { error: 'shard is lines, objects or none' }).default('lines'),
    /**
     * `gang`: every round is N ranks run at once, each rank resuming from its own checkpoint of the
     * round before. `rounds`: each round's N ranks start from the round's model, and once all have
     * succeeded a reduce (the average of their float32 tensors, or `reduce`) writes the next round's model.
     */
    mode: z.enum(['gang', 'rounds'], { error: 'mode is gang or rounds' }).default('gang'),
    /** A checkpoint (prefix) to start round 1 from; without it round 1 starts from nothing. */
    init_uri: uriField('init_uri').optional(),
    /** Prefix under which each rank checkpoints, `<prefix>round-<r>/rank-<k>/` (INTERFLEET_CHECKPOINT_URI). */
    checkpoint_uri: uriField('checkpoint_uri'),
    /** Handed to the command as JSON (INTERFLEET_PARAMS); at most 16 KiB once serialised. */
    params: z
      .record(z.string(), z.unknown(), { error: 'params must be a JSON object' })
      .refine((p) => jsonLength(p) <= 16_384, 'params is at most 16 KiB as JSON')
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
    /** A held-out split (object or prefix, lines as the built-in trainer reads them) the final model is evaluated on. */
    eval_uri: uriField('eval_uri').optional(),
    /** Registers the final model under this name when the job succeeds (GET /v1/trained-models/:name). */
    model_name: trainedModelNameSchema.optional(),
    /** POSTed the job when it ends, signed (see the README's Training: completion webhook). */
    webhook_url: z
      .url({ protocol: /^https?$/, error: 'webhook_url must be an http:// or https:// URL' })
      .max(2048, 'webhook_url is at most 2048 characters')
      .optional(),
    /**
     * `gang` mode: how often the whole gang may be stopped and restarted from the round's starting
     * checkpoint after one of its ranks failed or was lost with its worker (torchrun's
     * --max-restarts); once more and the job fails. Default 3 in gang mode; `rounds` mode retries a
     * failed rank alone (max_attempts) and takes only 0.
     */
    max_restarts: z
      .number({ error: 'max_restarts must be a number' })
      .int('max_restarts must be an integer')
      .min(0, `max_restarts is 0 to ${maxRestarts}`)
      .max(maxRestarts, `max_restarts is 0 to ${maxRestarts}`)
      .optional(),
    /**
     * When the job must be over (ISO 8601 with a zone, e.g. 2026-12-08T06:00:00Z): one still open
     * then fails, `deadline … passed`, and its running ranks are stopped. One in the past is refused.
     */
    deadline: z.iso
      .datetime({ offset: true, error: 'deadline is an ISO 8601 date-time with a zone, e.g. 2026-12-08T06:00:00Z' })
      .optional(),
  },
  {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unsupported field(s): ${iss.keys.join(', ')}` : undefined),
  },
);
/** `POST /v1/training/jobs`, with the checks across fields. */
export const trainingJobBodySchema = trainingJobFields.superRefine((body, ctx) => {
  // A gang's ranks run together: retrying one alone would leave its peers waiting on a rendezvous.
  if (body.mode === 'gang' && body.max_attempts > 1) {
    ctx.addIssue({
      code: 'custom',
      path: ['max_attempts'],
      message: 'max_attempts must be 1 in gang mode: a failed rank restarts the whole gang (max_restarts)',
    });
  }
  // Gang mode has no reduce: each rank resumes from its own checkpoint.
  if (body.mode === 'gang' && body.reduce !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['reduce'],
      message: 'reduce is for rounds mode: in gang mode each rank resumes from its own checkpoint',
    });
  }
  if (body.mode === 'rounds' && (body.max_restarts ?? 0) > 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['max_restarts'],
      message: 'max_restarts is for gang mode: in rounds mode a failed rank is retried alone (max_attempts)',
    });
  }
});
/** The gang restarts a job gets when it names none (gang mode). */
export const defaultMaxRestarts = 3;
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
  /** `rounds` mode: the user's reduce program; absent or null, the built-in average. */
  reduce: z.object({ command: z.string(), args: z.array(z.string()) }).nullish(),
  /** The first data URI (INTERFLEET_DATA_URI). */
  dataUri: z.string(),
  /** Every data URI (specs stored before there were several: [dataUri]). */
  dataUris: z.array(z.string()).optional(),
  /** Specs stored before shards existed pulled nothing. */
  shard: z.enum(['lines', 'objects', 'none']).default('none'),
  mode: z.enum(['gang', 'rounds']).default('gang'),
  initUri: z.string().nullable().default(null),
  /** Ends with `/`. */
  checkpointPrefix: z.string(),
  params: z.record(z.string(), z.unknown()),
  workers: z.number().int().min(1),
  rounds: z.number().int().min(1),
  priority: z.number().int(),
  attempts: z.number().int().min(1),
  /** Gang restarts allowed (gang mode); absent (specs stored before restarts existed): none. */
  maxRestarts: z.number().int().min(0).optional(),
  /** When the job must be over (UNIX ms); absent: never. */
  deadline: z.number().int().optional(),
  createdAt: z.number().int(),
  /** Results (trained-models.ts): the held-out split, the registry name, the completion webhook (absent: none). */
  evalUri: z.string().nullish(),
  modelName: z.string().nullish(),
  webhookUrl: z.string().nullish(),
});
export type TrainingSpec = z.infer<typeof trainingSpecSchema>;

/**
 * Where rank `rank` of round `round` checkpoints; a gang restarted `restart` times writes beside
 * the runs before (`round-<r>/restart-<n>/rank-<k>/`), so that a restarted gang never finds its
 * create-only uploads taken by a run that was stopped.
 */
export function checkpointUriFor(prefix: string, round: number, rank: number, restart = 0): string {
  return restart === 0
    ? `${prefix}round-${round}/rank-${rank}/`
    : `${prefix}round-${round}/restart-${restart}/rank-${rank}/`;
}

/** Where the reduce of round `round` writes the model the next round starts from (`rounds` mode). */
export function modelUriFor(prefix: string, round: number): string {
  return `${prefix}round-${round}/model/`;
}

/** Where a rank starts from: the model of the round before (rounds), its own checkpoint (gang), or init_uri. */
export function initUriFor(spec: TrainingSpec, round: number, rank: number): string | null {
  if (round === 1) return spec.initUri;
  return spec.mode === 'rounds'
    ? modelUriFor(spec.checkpointPrefix, round - 1)
    : checkpointUriFor(spec.checkpointPrefix, round - 1, rank);
}

export const RANK_JOB_NAME = 'rank';
export const REDUCE_JOB_NAME = 'reduce';
/** The results of an ended job (checksum, evaluation, manifest, registration), run by a worker. */
export const FINISH_JOB_NAME = 'finish';

/** The `finish` job on `train.<pool>`: the worker reads everything else from the job's state. */
export const finishJobSchema = z.object({ jobId: trainingJobIdSchema, pool: z.string() });
export type FinishJob = z.infer<typeof finishJobSchema>;

/** One rank of one round on `train.<pool>`: what the worker needs, no more. */
export const rankJobSchema = z.object({
  jobId: trainingJobIdSchema,
  pool: z.string(),
  round: z.number().int().min(1),
  rank: z.number().int().min(0),
  worldSize: z.number().int().min(1),
  mode: z.enum(['gang', 'rounds']).default('gang'),
  command: z.string().min(1),
  args: z.array(z.string()),
  dataUri: z.string(),
  /** What to pull into the rank's data directory (`none`: nothing). */
  data: z
    .object({ uris: z.array(z.string()), shard: z.enum(['lines', 'objects', 'none']) })
    .default({ uris: [], shard: 'none' }),
  checkpointUri: z.string(),
  /** The same rank's checkpoint of the round before (null in round 1): where it resumes from. */
  previousCheckpointUri: z.string().nullable(),
  /** What is pulled into the rank's init directory before it starts (initUriFor); null: nothing. */
  initUri: z.string().nullable().default(null),
  params: z.record(z.string(), z.unknown()),
  /** Gang restarts before this run (its incarnation): a run of an earlier one is not counted. */
  restart: z.number().int().min(0).default(0),
});
export type RankJob = z.infer<typeof rankJobSchema>;

/** The reduce of one round (`rounds` mode) on `train.<pool>`: the ranks' checkpoints into the round's model. */
export const reduceJobSchema = z.object({
  jobId: trainingJobIdSchema,
  pool: z.string(),
  round: z.number().int().min(1),
  /** The checkpoint of every rank of the round, rank order. */
  inputs: z.array(z.string()).min(1),
  /** modelUriFor(prefix, round). */
  outputUri: z.string(),
  /** The user's reduce program (reduce-program.ts); null, as in jobs added before it existed: the built-in average. */
  program: z
    .object({ command: z.string().min(1), args: z.array(z.string()) })
    .nullable()
    .default(null),
  /** The round's starting checkpoint (initUriFor), pulled into the program's init/; null: none. */
  initUri: z.string().nullable().default(null),
  /** The job's hyperparameters (INTERFLEET_HYPERPARAMS). */
  params: z.record(z.string(), z.unknown()).default({}),
});
export type ReduceJob = z.infer<typeof reduceJobSchema>;

export function reduceJobFor(spec: TrainingSpec, round: number): ReduceJob {
  return reduceJobSchema.parse({
    jobId: spec.id,
    pool: spec.pool,
    round,
    inputs: Array.from({ length: spec.workers }, (_, rank) => checkpointUriFor(spec.checkpointPrefix, round, rank)),
    outputUri: modelUriFor(spec.checkpointPrefix, round),
    program: spec.reduce ?? null,
    initUri: initUriFor(spec, round, 0),
    params: spec.params,
  });
}

/**
 * The `train.<pool>` job of a rank (validated): what admission adds. `restart`: the gang's restarts
 * so far; `previous`: in gang mode, where this rank's run of the round before checkpointed (its
 * record says, when that run was a restarted gang's).
 */
export function rankJobFor(spec: TrainingSpec, round: number, rank: number, restart = 0, previous?: string): RankJob {
  const gangPrevious = spec.mode === 'gang' && round > 1 ? previous : undefined;
  return rankJobSchema.parse({
    jobId: spec.id,
    pool: spec.pool,
    round,
    rank,
    worldSize: spec.workers,
    mode: spec.mode,
    command: spec.command,
    args: spec.args,
    dataUri: spec.dataUri,
    data: { uris: spec.dataUris ?? [spec.dataUri], shard: spec.shard },
    checkpointUri: checkpointUriFor(spec.checkpointPrefix, round, rank, spec.mode === 'gang' ? restart : 0),
    previousCheckpointUri:
      round > 1 ? (gangPrevious ?? checkpointUriFor(spec.checkpointPrefix, round - 1, rank)) : null,
    initUri: gangPrevious ?? initUriFor(spec, round, rank),
    params: spec.params,
    restart,
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
  /** The run of the gang it belongs to (gang restarts before it). */
  restart: z.number().int().min(0).default(0),
});
export type RankRecord = z.infer<typeof rankRecordSchema>;
/** A record as written: fields with defaults may be left out. */
export type RankRecordInput = z.input<typeof rankRecordSchema>;
