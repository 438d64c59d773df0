/**
 * The Batch HTTP API (`/v1/batches`), shaped like OpenAI's so that the
 * official clients work unchanged: the create body, the Batch object and the
 * list page. Storage URIs stand in for OpenAI's file ids (`input_file_id` is
 * the input URI, `output_file_id` the output URI). Fields OpenAI lacks
 * (model, output location, priority, tenant, progress) are added beside
 * theirs, never in place of them.
 */
import { z } from 'zod';
import { submissionPrioritySchema } from './api.ts';
import { batchIdSchema, batchStatuses, type BatchState, type TimestampField } from '../batch/batch-state.ts';
// The URI module alone: the client SDK imports this file and must not load the cloud SDKs.
import { formatStorageUri, parseStorageUri, storageUriSchema } from '../storage/uri.ts';
import { batchEndpoints } from './batch.ts';

/** Durations as the API and config write them: 30s, 90m, 24h, 7d. */
const windowRe = /^[1-9]\d*(ms|s|m|h|d)$/;
const uriHelp = 'a storage URI (file://, gs:// or oci://) of a JSONL object or of a prefix';

/** OpenAI's metadata: at most 16 pairs, keys up to 64 characters, values up to 512. */
export const metadataSchema = z
  .record(
    z.string(),
    z.string({ error: 'metadata values must be strings' }).max(512, 'metadata values are at most 512 characters'),
  )
  .superRefine((m, ctx) => {
    const keys = Object.keys(m);
    if (keys.length > 16) ctx.addIssue({ code: 'custom', message: 'metadata holds at most 16 key-value pairs' });
    for (const key of keys.filter((k) => k.length > 64)) {
      ctx.addIssue({ code: 'custom', path: [key], message: 'metadata keys are at most 64 characters' });
    }
  });

/**
 * `POST /v1/batches`. Exactly one of `input_file` (ours) and `input_file_id`
 * (OpenAI's name, so `client.batches.create` works) names the input. Unknown
 * fields are rejected by name rather than silently ignored.
 */
export const batchCreateBodySchema = z
  .strictObject(
    {
      input_file: storageUriSchema.optional(),
      input_file_id: storageUriSchema.optional(),
      endpoint: z.enum(batchEndpoints, { error: `endpoint must be one of ${batchEndpoints.join(', ')}` }),
      /** The pool that runs the batch; the first configured pool when absent. */
      model: z.string().min(1, 'model must not be empty').optional(),
      completion_window: z
        .string()
        .regex(windowRe, 'completion_window must be a positive duration such as 24h, 90m or 30s')
        .default('24h'),
      /** Prefix under which output, errors and manifest go; default: beside the input. */
      output_location: storageUriSchema.optional(),
      metadata: metadataSchema.nullish(),
      priority: submissionPrioritySchema,
      /** The tenant charged; absent: the API key's (only an admin key names another; auth off: `default`). */
      tenant: z.string().min(1, 'tenant must not be empty').max(64, 'tenant is at most 64 characters').optional(),
    },
    {
      error: (iss) => (iss.code === 'unrecognized_keys' ? `unsupported field(s): ${iss.keys.join(', ')}` : undefined),
    },
  )
  .superRefine((body, ctx) => {
    if (body.input_file === undefined && body.input_file_id === undefined) {
      ctx.addIssue({ code: 'custom', path: ['input_file'], message: `input_file is required: ${uriHelp}` });
    } else if (body.input_file !== undefined && body.input_file_id !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['input_file_id'],
        message: 'give input_file or input_file_id (its OpenAI alias), not both',
      });
    }
  });
export type BatchCreateBody = z.output<typeof batchCreateBodySchema>;
/** What a caller writes: fields with defaults may be left out. */
export type BatchCreateParams = z.input<typeof batchCreateBodySchema>;

/** The input URI of a validated body (whichever of the two names carried it). */
export function inputOf(body: Pick<BatchCreateBody, 'input_file' | 'input_file_id'>): string {
  return (body.input_file ?? body.input_file_id)!;
}

/**
 * Where a batch's files go when the caller names no output location: beside
 * its input, in a folder named for the batch. The input's parent folder is
 * the one holding the object (`file:///data/in.jsonl` → `file:///data/`), or
 * the one above a prefix (`gs://b/day/` → `gs://b/`).
 */
export function defaultOutputLocation(inputUri: string, batchId: string): string {
  const parsed = parseStorageUri(inputUri);
  const parent = (key: string): string => {
    const trimmed = key.replace(/\/+$/, '');
    return trimmed.slice(0, trimmed.lastIndexOf('/') + 1);
  };
  if (parsed.scheme === 'file') return formatStorageUri({ ...parsed, path: `${parent(parsed.path)}${batchId}/` });
  return formatStorageUri({ ...parsed, key: `${parent(parsed.key)}${batchId}/` });
}

/** An output location as given, made a folder (a prefix ending with `/`). */
export function asOutputPrefix(uri: string): string {
  return uri.endsWith('/') ? uri : `${uri}/`;
}

const seconds = z.number().int().nullable();

/** The Batch object: OpenAI's fields, then ours. Timestamps are UNIX seconds, null when unset. */
export const apiBatchSchema = z.object({
  id: z.string(),
  object: z.literal('batch'),
  endpoint: z.string(),
  errors: z
    .object({
      object: z.literal('list'),
      data: z.array(
        z.object({
          code: z.string(),
          message: z.string(),
          param: z.string().nullable(),
          line: z.number().int().nullable(),
        }),
      ),
    })
    .nullable(),
  /** The input URI (OpenAI's file id). */
  input_file_id: z.string(),
  completion_window: z.string(),
  status: z.enum(batchStatuses),
  output_file_id: z.string().nullable(),
  error_file_id: z.string().nullable(),
  created_at: z.number().int(),
  in_progress_at: seconds,
  expires_at: seconds,
  finalizing_at: seconds,
  completed_at: seconds,
  failed_at: seconds,
  expired_at: seconds,
  cancelling_at: seconds,
  cancelled_at: seconds,
  request_counts: z.object({ total: z.number().int(), completed: z.number().int(), failed: z.number().int() }),
  metadata: z.record(z.string(), z.string()).nullable(),
  // Ours.
  model: z.string(),
  input_file: z.string(),
  output_location: z.string(),
  output_file: z.string().nullable(),
  error_file: z.string().nullable(),
  manifest_file: z.string().nullable(),
  priority: z.number().int(),
  tenant: z.string(),
  /** `api`, or `cron:<schedule>`. */
  source: z.string(),
  progress: z.object({
    chunks_total: z.number().int(),
    /** Chunks settled (done, skipped or failed for good). */
    chunks_done: z.number().int(),
    /** Lines completed plus lines failed. */
    lines_done: z.number().int(),
  }),
});
export type ApiBatch = z.infer<typeof apiBatchSchema>;

/** `GET /v1/batches`: newest first, OpenAI's cursor page. */
export const batchListSchema = z.object({
  object: z.literal('list'),
  data: z.array(apiBatchSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});
export type BatchList = z.infer<typeof batchListSchema>;

export const batchListQuerySchema = z.object({
  limit: z.coerce
    .number({ error: 'limit must be a number' })
    .int('limit must be an integer')
    .min(1, 'limit is 1 to 100')
    .max(100, 'limit is 1 to 100')
    .default(20),
  /** The last id of the previous page. */
  after: batchIdSchema.optional(),
});
/** The list query as a caller writes it (the schema coerces the query string's text). */
export interface BatchListQuery {
  /** 1 to 100; default 20. */
  limit?: number;
  after?: string;
}

export const batchIdParamsSchema = z.object({ batch_id: batchIdSchema });

const toSeconds = (ms: number | undefined): number | null => (ms === undefined ? null : Math.floor(ms / 1000));

/** The API's view of a batch's Redis state (times there are ms; here seconds). Pure. */
export function toApiBatch(state: BatchState): ApiBatch {
  const { spec, counters, files } = state;
  const at = (field: TimestampField): number | null => toSeconds(state.timestamps[field]);
  return {
    id: spec.id,
    object: 'batch',
    endpoint: spec.endpoint,
    errors:
      state.errors.length === 0
        ? null
        : {
            object: 'list',
            data: state.errors.map((e) => ({ code: e.code, message: e.message, param: e.param, line: e.line })),
          },
    input_file_id: spec.input,
    completion_window: spec.completionWindow,
    status: state.status,
    output_file_id: files.output,
    error_file_id: files.error,
    created_at: toSeconds(spec.createdAt)!,
    in_progress_at: at('in_progress_at'),
    expires_at: toSeconds(spec.expiresAt),
    finalizing_at: at('finalizing_at'),
    completed_at: at('completed_at'),
    failed_at: at('failed_at'),
    expired_at: at('expired_at'),
    cancelling_at: at('cancelling_at'),
    cancelled_at: at('cancelled_at'),
    request_counts: { total: counters.total, completed: counters.completed, failed: counters.failed },
    metadata: spec.metadata,
    model: spec.model,
    input_file: spec.input,
    output_location: spec.outputPrefix,
    output_file: files.output,
    error_file: files.error,
    manifest_file: files.manifest,
    priority: spec.priority,
    tenant: spec.tenant,
    source: spec.source,
    progress: {
      chunks_total: counters.chunks,
      chunks_done: counters.settled,
      lines_done: counters.completed + counters.failed,
    },
  };
}
