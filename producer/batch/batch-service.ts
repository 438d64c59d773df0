/**
 * What the Batch API does, apart from HTTP: create a batch (state in Redis,
 * then a plan job on the control queue), read and list batches, cancel one,
 * and launch a scheduled batch once per cron firing. Creation never reads
 * the input: planning does, asynchronously, and a missing input ends the
 * batch `failed` with a reason (OpenAI's validation failure).
 *
 * Redis failures become 503 + Retry-After; nothing is half-answered.
 */
import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import { z } from 'zod';
import { newBatchId, type BatchSpec, type BatchState, type BatchStore } from '../../common/batch/batch-state.ts';
import { planJob } from '../../common/batch/control-jobs.ts';
import { expandUriTemplate, UriTemplateError } from '../../common/batch/uri-template.ts';
import { parseDuration, type BatchSchedule, type Config } from '../../common/config.ts';
import {
  asOutputPrefix,
  batchCreateBodySchema,
  defaultOutputLocation,
  inputOf,
  type BatchCreateBody,
  type BatchCreateParams,
} from '../../common/contracts/batch-api.ts';
import { FleetError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { RedisClient } from '../../common/redis.ts';
import { isStorageError, parseStorageUri } from '../../common/storage/index.ts';
import { cronFiringKey, idempotencyClaimKey } from '../../common/topology.ts';
import { anonymousPrincipal, DEFAULT_TENANT } from '../../common/auth/principal.ts';
import {
  confineStorage,
  operatorPrincipal,
  type StorageAccess,
  type StoragePrincipal,
} from '../auth/storage-grants.ts';

/** A cron firing's batch id is kept this long, so a retried firing finds it (seconds). */
const CRON_KEY_TTL_S = 7 * 86_400;
/** How long an Idempotency-Key answers with the batch it created (Stripe's convention: a day). */
const IDEMPOTENCY_TTL_S = 86_400;

export interface BatchLimits {
  pools: readonly string[];
  maxCompletionWindowMs: number;
}

/**
 * The spec a validated create body asks for. Pure: checks what needs the
 * config (pool, longest window) and the URIs' shape, and fills defaults.
 */
export function buildSpec(
  body: BatchCreateBody,
  limits: BatchLimits,
  ids: { id: string; now: number; source: string },
): BatchSpec {
  const input = inputOf(body);
  const inputParam = body.input_file !== undefined ? 'input_file' : 'input_file_id';
  checkUri(input, inputParam);
  if (body.output_location !== undefined) checkUri(body.output_location, 'output_location');
  const model = body.model ?? limits.pools[0]!;
  if (!limits.pools.includes(model)) {
    throw new FleetError(
      'model_not_found',
      `The model '${model}' does not exist; available: ${limits.pools.join(', ')}`,
      {
        param: 'model',
      },
    );
  }
  const windowMs = parseDuration(body.completion_window);
  if (windowMs === undefined || windowMs <= 0) {
    throw new FleetError('bad_request', 'completion_window must be a positive duration such as 24h, 90m or 30s', {
      param: 'completion_window',
    });
  }
  if (windowMs > limits.maxCompletionWindowMs) {
    throw new FleetError(
      'bad_request',
      `completion_window ${body.completion_window} is longer than the limit of ${formatMs(limits.maxCompletionWindowMs)}`,
      { param: 'completion_window' },
    );
  }
  return {
    id: ids.id,
    endpoint: body.endpoint,
    model,
    input,
    outputPrefix:
      body.output_location !== undefined ? asOutputPrefix(body.output_location) : defaultOutputLocation(input, ids.id),
    completionWindow: body.completion_window,
    createdAt: ids.now,
    expiresAt: ids.now + windowMs,
    metadata: body.metadata ?? null,
    priority: body.priority,
    tenant: body.tenant ?? DEFAULT_TENANT,
    source: ids.source,
  };
}

/**
 * What a batch reads and writes: its input, and the output prefix that holds its output, error,
 * manifest and plan files (named by output_location, or beside the input when it names none).
 */
export function batchStorageAccess(body: BatchCreateBody, spec: BatchSpec): StorageAccess[] {
  const inputField = body.input_file !== undefined ? 'input_file' : 'input_file_id';
  return [
    { field: inputField, uri: spec.input, access: 'read' },
    {
      field: body.output_location !== undefined ? 'output_location' : inputField,
      uri: spec.outputPrefix,
      access: 'write',
    },
  ];
}

function checkUri(uri: string, param: string): void {
  try {
    parseStorageUri(uri);
  } catch (err) {
    if (isStorageError(err, 'invalid_uri')) throw new FleetError('bad_request', err.message, { param });
    throw err;
  }
}

/** 604800000 → "7d", 5400000 → "90m": the largest unit that divides it. */
function formatMs(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export interface BatchServiceDeps {
  config: Config;
  /** A fail-fast (command) connection: an outage answers 503 at once. */
  redis: RedisClient;
  store: BatchStore;
  /** The `{batch-control}` queue. */
  controlQueue: Queue;
  logger: Logger;
  now?: () => number;
}

export class BatchService {
  private readonly now: () => number;
  private readonly limits: BatchLimits;

  constructor(private readonly deps: BatchServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.limits = {
      pools: deps.config.pools.map((p) => p.name),
      maxCompletionWindowMs: deps.config.batch.maxCompletionWindowMs,
    };
  }

  /**
   * Creates a batch in `validating` and queues its planning. With an
   * idempotency key (the Idempotency-Key header), a retry of the same request
   * within a day answers the batch the first try created instead of making a
   * second one; the same key with a different body is a conflict (409).
   */
  async create(
    body: BatchCreateBody,
    source = 'api',
    idempotencyKey?: string,
    principal: StoragePrincipal = anonymousPrincipal,
  ): Promise<BatchState> {
    if (idempotencyKey === undefined) {
      const now = this.now();
      const spec = buildSpec(body, this.limits, { id: newBatchId(now), now, source });
      await this.confine(body, spec, principal);
      await this.redisCall('create batch', () => this.deps.store.create(spec));
      await this.enqueuePlan(spec.id);
      this.deps.logger.info(
        { batchId: spec.id, model: spec.model, input: spec.input, output: spec.outputPrefix, source },
        'batch created',
      );
      return (await this.get(spec.id))!;
    }
    const key = idempotencyClaimKey(this.deps.config.redis.prefix, body.tenant ?? DEFAULT_TENANT, idempotencyKey);
    const fingerprint = createHash('sha256').update(JSON.stringify(body)).digest('hex');
    const batchId = await this.createOnce(key, IDEMPOTENCY_TTL_S, fingerprint, body, source, principal);
    return (await this.get(batchId))!;
  }

  async get(batchId: string): Promise<BatchState | undefined> {
    return this.redisCall('read batch', () => this.deps.store.get(batchId));
  }

  /**
   * Newest first; `after` is the last id of the previous page. With a tenant, only its batches:
   * the one index holds every tenant's, so pages of it are read until `limit` of the tenant's are
   * found (a per-tenant index would spare the scan when tenants number in the hundreds).
   */
  async list(limit: number, after?: string, tenant?: string): Promise<{ batches: BatchState[]; hasMore: boolean }> {
    return this.redisCall('list batches', async () => {
      if (tenant === undefined) {
        const { ids, hasMore } = await this.deps.store.listIds(limit, after);
        return { batches: await this.deps.store.getMany(ids), hasMore };
      }
      const found: BatchState[] = [];
      let cursor = after;
      for (;;) {
        const { ids, hasMore } = await this.deps.store.listIds(Math.max(100, limit), cursor);
        for (const state of await this.deps.store.getMany(ids)) {
          if (state.spec.tenant !== tenant) continue;
          if (found.length === limit) return { batches: found, hasMore: true };
          found.push(state);
        }
        if (!hasMore || ids.length === 0) return { batches: found, hasMore: false };
        cursor = ids.at(-1);
      }
    });
  }

  /**
   * Stops a running batch: admission ends, finalisation delivers what ran and
   * marks the rest. Cancelling twice answers the same; a batch that is
   * finishing or finished cannot be cancelled (FleetError `conflict`, HTTP 409).
   */
  async cancel(batchId: string): Promise<BatchState | undefined> {
    const { moved, status } = await this.redisCall('cancel batch', () =>
      this.deps.store.transition(batchId, ['validating', 'in_progress'], 'cancelling', {
        stop: 'cancelled',
        cancelling_at: this.now(),
      }),
    );
    if (status === undefined) return undefined;
    if (!moved && status !== 'cancelling' && status !== 'cancelled') {
      throw new FleetError('conflict', `batch ${batchId} is ${status} and can no longer be cancelled`);
    }
    if (moved) this.deps.logger.info({ batchId, from: status }, 'batch cancelled');
    return this.get(batchId);
  }

  /**
   * Launches the batch of one cron firing, once: the firing's batch id is
   * claimed with SET NX before the batch is created, so a retried cron job
   * finds it (and finishes creating it if the first try stopped half-way).
   */
  async launchScheduled(schedule: BatchSchedule, firedAt: Date): Promise<string> {
    let params: BatchCreateParams;
    try {
      params = {
        input_file: expandUriTemplate(schedule.input, firedAt, schedule.tz),
        endpoint: schedule.endpoint,
        model: schedule.model,
        completion_window: schedule.completionWindow,
        priority: schedule.priority,
        tenant: schedule.tenant,
        ...(schedule.output !== undefined && {
          output_location: expandUriTemplate(schedule.output, firedAt, schedule.tz),
        }),
        ...(schedule.metadata !== undefined && { metadata: schedule.metadata }),
      };
    } catch (err) {
      if (err instanceof UriTemplateError)
        throw new FleetError('bad_request', `schedule ${schedule.name}: ${err.message}`);
      throw err;
    }
    const parsed = batchCreateBodySchema.safeParse(params);
    if (!parsed.success) {
      throw new FleetError('bad_request', `schedule ${schedule.name}: ${z.prettifyError(parsed.error)}`);
    }
    const key = cronFiringKey(this.deps.config.redis.prefix, schedule.name, firedAt);
    return this.createOnce(key, CRON_KEY_TTL_S, '', parsed.data, `cron:${schedule.name}`, operatorPrincipal);
  }

  /**
   * Creates the batch of `body` once per claim key: a batch id is claimed
   * with SET NX (with the request's fingerprint) before the batch is created,
   * so a retry finds it, and finishes creating it if the first try stopped
   * half-way. Returns the batch id.
   */
  private async createOnce(
    key: string,
    ttlS: number,
    fingerprint: string,
    body: BatchCreateBody,
    source: string,
    principal: StoragePrincipal,
  ): Promise<string> {
    const now = this.now();
    const mine = `${newBatchId(now)} ${fingerprint}`;
    const claim = await this.redisCall('claim batch creation', async () => {
      const set = await this.deps.redis.set(key, mine, 'EX', ttlS, 'NX');
      return set === 'OK' ? mine : ((await this.deps.redis.get(key)) ?? mine);
    });
    const [batchId = '', claimedFingerprint = ''] = claim.split(' ');
    if (claimedFingerprint !== fingerprint) {
      throw new FleetError(
        'conflict',
        `this Idempotency-Key was used for a different request (batch ${batchId}); use a new key for a new batch`,
      );
    }
    const existing = await this.get(batchId);
    if (existing) {
      // An earlier try created it; make sure its planning was queued (a no-op when it was).
      if (existing.status === 'validating') await this.enqueuePlan(batchId);
      return batchId;
    }
    const spec = buildSpec(body, this.limits, { id: batchId, now, source });
    await this.confine(body, spec, principal);
    try {
      await this.redisCall('create batch', () => this.deps.store.create(spec));
    } catch (err) {
      // Two retries racing: the other one created it first.
      if (!(await this.get(batchId))) throw err;
    }
    await this.enqueuePlan(batchId);
    this.deps.logger.info({ batchId, source, input: spec.input }, 'batch created (claimed once)');
    return batchId;
  }

  /** Refuses (400/403) a batch naming storage outside the file roots or the principal's grants. */
  private async confine(body: BatchCreateBody, spec: BatchSpec, principal: StoragePrincipal) {
    await confineStorage(batchStorageAccess(body, spec), {
      fileRoots: this.deps.config.storage.file.roots,
      principal,
    });
  }

  private async enqueuePlan(batchId: string): Promise<void> {
    const { name, data, opts } = planJob(batchId);
    await this.redisCall('queue batch planning', () => this.deps.controlQueue.add(name, data, opts));
  }

  /** Runs a Redis call; a failure other than ours is an outage: 503 with Retry-After. */
  private async redisCall<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof FleetError || err instanceof z.ZodError) throw err;
      this.deps.logger.warn({ err }, `${what} failed`);
      throw new FleetError('unavailable', 'batch state (Redis) is unreachable; try again shortly', {
        cause: err,
        retryAfterMs: this.deps.config.producer.retryAfterMs,
      });
    }
  }
}
