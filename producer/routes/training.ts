/**
 * Training jobs: `POST /v1/training/jobs` (submit a gang), `GET
 * /v1/training/jobs/:id` (its state and every rank's record, round by round)
 * and `POST /v1/training/jobs/:id/cancel`. Submission only records the gang,
 * queued for round 1; the scheduler leader admits it when the pool can hold
 * all its ranks at once (scheduler/gang-admission.ts).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { findPool, programAllowed, type Config } from '../../common/config.ts';
import {
  defaultMaxRestarts,
  modelUriFor,
  trainingJobBodySchema,
  trainingJobIdSchema,
  type TrainingJobBody,
  type TrainingSpec,
} from '../../common/contracts/training.ts';
import type { Principal } from '../../common/auth/principal.ts';
import { FleetError } from '../../common/errors.ts';
import { canSee, jobTenant, principalOf } from '../auth/index.ts';
import type { RedisClient } from '../../common/redis.ts';
import { TrainingResultsStore, type JobResults } from '../../common/training/training-results.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import { confineStorage, type StorageAccess } from '../auth/storage-grants.ts';
import {
  newTrainingJobId,
  TrainingStore,
  type RankEntry,
  type TrainingState,
} from '../../common/training/training-state.ts';

const paramsSchema = z.object({ id: trainingJobIdSchema });
const seconds = (ms: number | null): number | null => (ms === null ? null : Math.floor(ms / 1000));

/** Rounds whose reduce has written their model: every round before the current one, and the last once succeeded. */
function modelsOf(state: TrainingState): Array<{ round: number; uri: string }> {
  const done = state.status === 'succeeded' ? state.round : state.round - 1;
  return Array.from({ length: Math.max(0, done) }, (_, i) => ({
    round: i + 1,
    uri: modelUriFor(state.spec.checkpointPrefix, i + 1),
  }));
}

/** The API's view of a gang: snake_case, times in UNIX seconds, ranks in round then rank order. */
export function toApiTrainingJob(
  state: TrainingState,
  ranks: readonly RankEntry[],
  results: JobResults = { manifest: null, resultsError: null, webhook: null },
) {
  const { spec } = state;
  return {
    id: spec.id,
    object: 'training.job',
    pool: spec.pool,
    tenant: spec.tenant,
    status: state.status,
    round: state.round,
    rounds: spec.rounds,
    workers: spec.workers,
    priority: spec.priority,
    max_attempts: spec.attempts,
    /** Gang mode: restarts allowed, made so far, and why the last one was. */
    max_restarts: spec.maxRestarts ?? 0,
    restarts: state.restarts,
    restart_reason: state.restartReason,
    /** When the job must be over (UNIX seconds); null: no deadline. */
    deadline: seconds(spec.deadline ?? null),
    command: spec.command,
    args: spec.args,
    /** `rounds` mode: the user's reduce program; null, the built-in average. */
    reduce: spec.reduce ?? null,
    data_uri: spec.dataUris ?? [spec.dataUri],
    shard: spec.shard,
    mode: spec.mode,
    init_uri: spec.initUri,
    checkpoint_uri: spec.checkpointPrefix,
    /** The model each finished round's reduce wrote (`rounds` mode), latest last. */
    models: spec.mode === 'rounds' ? modelsOf(state) : [],
    params: spec.params,
    /** Why the scheduler holds it (queued only): a gang-admission hold reason. */
    waiting_reason: state.status === 'queued' ? state.waiting : null,
    /** Why it failed or was cancelled. */
    error: state.status === 'failed' || state.status === 'cancelled' ? state.reason : null,
    created_at: seconds(spec.createdAt),
    admitted_at: seconds(state.admittedAt),
    ended_at: seconds(state.endedAt),
    eval_uri: spec.evalUri ?? null,
    model_name: spec.modelName ?? null,
    webhook_url: spec.webhookUrl ?? null,
    /** Written once the job has ended (a worker's results job): metrics per round, evaluation, artifact. */
    manifest: results.manifest,
    /** Why the results job failed for good (then there is no manifest). */
    manifest_error: results.resultsError,
    /** The completion webhook's delivery: pending, delivered or failed, with attempts and the last error. */
    webhook: results.webhook,
    ranks: ranks.map((r) => ({
      round: r.round,
      rank: r.rank,
      status: r.state,
      worker: r.worker,
      exit_code: r.exitCode,
      reason: r.reason,
      metrics: r.metrics,
      checkpoint_uri: r.checkpointUri,
      started_at: seconds(r.startedAt),
      ended_at: seconds(r.endedAt),
    })),
  };
}

/**
 * What a training job reads (its data, starting checkpoint and held-out split) and writes (its
 * checkpoints, each round's model and the reduce's inputs, all under checkpoint_uri).
 */
function trainingStorageAccess(body: TrainingJobBody, dataUris: readonly string[]): StorageAccess[] {
  const single = typeof body.data_uri === 'string';
  return [
    ...dataUris.map((uri, i): StorageAccess => ({ field: single ? 'data_uri' : `data_uri.${i}`, uri, access: 'read' })),
    ...(body.init_uri !== undefined ? [{ field: 'init_uri', uri: body.init_uri, access: 'read' } as const] : []),
    ...(body.eval_uri !== undefined ? [{ field: 'eval_uri', uri: body.eval_uri, access: 'read' } as const] : []),
    { field: 'checkpoint_uri', uri: body.checkpoint_uri, access: 'write' },
  ];
}

/**
 * Whether what the workers will pull (the data, unless `shard: none`, and the starting checkpoint)
 * can be read, before anything is queued: a URI
 * ending in `/` must list at least one object, any other must exist. A missing or forbidden one
 * is the submitter's to fix (400 naming the field); storage unreachable now, 503.
 */
async function checkReadable(storage: Storage, uri: string, param: string): Promise<void> {
  try {
    if (!uri.endsWith('/')) {
      await storage.stat(uri);
      return;
    }
    const page = await storage.list(uri, { pageSize: 1 });
    if (page.items.length === 0) {
      throw new FleetError('bad_request', `${param}: no objects under ${uri}`, { param });
    }
  } catch (err) {
    if (!isStorageError(err)) throw err;
    const what = `${param}: ${uri} cannot be read (${err.code}): ${err.message}`;
    throw new FleetError(err.retryable ? 'unavailable' : 'bad_request', what, { param, cause: err });
  }
}

const notFound = (id: string): FleetError =>
  new FleetError('not_found', `No training job found with id '${id}'`, { param: 'id' });

export const trainingRoutes =
  (config: Config, redis: RedisClient, storage: Storage, now: () => number = Date.now): FastifyPluginAsyncZod =>
  async (app) => {
    const store = new TrainingStore(redis, config.redis.prefix);
    const results = new TrainingResultsStore(redis, config.redis.prefix);

    /** The job as the caller may see it: another tenant's answers as a missing one (no existence leak). */
    const read = async (id: string, principal: Principal) => {
      const pool = await store.poolOf(id);
      const state = pool === undefined ? undefined : await store.get(pool, id);
      if (!state || !canSee(principal, state.spec.tenant)) throw notFound(id);
      const [ranks, res] = await Promise.all([store.ranks(state.spec.pool, id), results.get(state.spec.pool, id)]);
      return toApiTrainingJob(state, ranks, res);
    };

    app.post('/v1/training/jobs', { schema: { body: trainingJobBodySchema } }, async (request) => {
      const body = request.body;
      const principal = principalOf(request);
      const tenant = jobTenant(principal, body.tenant);
      const pool = findPool(config, body.pool);
      if (!pool) {
        const names = config.pools.map((p) => p.name).join(', ');
        throw new FleetError('not_found', `The pool '${body.pool}' does not exist; pools: ${names}`, {
          param: 'pool',
        });
      }
      if (pool.trainingQuota !== undefined && body.workers > pool.trainingQuota) {
        throw new FleetError(
          'bad_request',
          `workers: a gang of ${body.workers} can never run on pool '${pool.name}', whose training quota is ${pool.trainingQuota} slots`,
          { param: 'workers' },
        );
      }
      const programs = pool.lanes.training.programs;
      if (!programAllowed(programs, body.command)) {
        throw new FleetError(
          'bad_request',
          `command: '${body.command}' is not among pool '${pool.name}''s training programs (lanes.training.programs: ${programs.join(', ') || 'none'})`,
          { param: 'command' },
        );
      }
      if (body.reduce !== undefined && !programAllowed(programs, body.reduce.command)) {
        throw new FleetError(
          'bad_request',
          `reduce.command: '${body.reduce.command}' is not among pool '${pool.name}''s training programs (lanes.training.programs: ${programs.join(', ') || 'none'})`,
          { param: 'reduce.command' },
        );
      }
      const deadline = body.deadline === undefined ? undefined : Date.parse(body.deadline);
      if (deadline !== undefined && deadline <= now()) {
        throw new FleetError('bad_request', `deadline: ${body.deadline} is in the past`, { param: 'deadline' });
      }
      const dataUris = typeof body.data_uri === 'string' ? [body.data_uri] : body.data_uri;
      // Before anything is read (the checks below) or queued: 400 malformed, 403 outside the roots or grants.
      await confineStorage(trainingStorageAccess(body, dataUris), {
        fileRoots: config.storage.file.roots,
        principal,
      });
      if (body.webhook_url !== undefined && config.training.webhook.secret === undefined) {
        throw new FleetError(
          'bad_request',
          'webhook_url: this fleet has no webhook secret to sign deliveries with (training.webhook.secret, env INTERFLEET_WEBHOOK_SECRET)',
          { param: 'webhook_url' },
        );
      }
      // What the workers will pull (shard `none`: the program reads the data itself, with its own access).
      for (const [i, uri] of body.shard === 'none' ? [] : dataUris.entries()) {
        await checkReadable(storage, uri, typeof body.data_uri === 'string' ? 'data_uri' : `data_uri.${i}`);
      }
      if (body.init_uri !== undefined) {
        await checkReadable(storage, body.init_uri.endsWith('/') ? body.init_uri : `${body.init_uri}/`, 'init_uri');
      }
      if (body.eval_uri !== undefined) await checkReadable(storage, body.eval_uri, 'eval_uri');
      const createdAt = now();
      const spec: TrainingSpec = {
        id: newTrainingJobId(createdAt),
        pool: pool.name,
        tenant,
        command: body.command,
        args: body.args,
        reduce: body.reduce ?? null,
        dataUri: dataUris[0]!,
        dataUris,
        shard: body.shard,
        mode: body.mode,
        initUri: body.init_uri === undefined ? null : body.init_uri.endsWith('/') ? body.init_uri : `${body.init_uri}/`,
        checkpointPrefix: body.checkpoint_uri.endsWith('/') ? body.checkpoint_uri : `${body.checkpoint_uri}/`,
        params: body.params,
        workers: body.workers,
        rounds: body.rounds,
        priority: body.priority,
        attempts: body.max_attempts,
        maxRestarts: body.max_restarts ?? (body.mode === 'gang' ? defaultMaxRestarts : 0),
        ...(deadline !== undefined && { deadline }),
        createdAt,
        evalUri: body.eval_uri ?? null,
        modelName: body.model_name ?? null,
        webhookUrl: body.webhook_url ?? null,
      };
      await store.create(spec);
      request.log.info({ trainingJob: spec.id, pool: spec.pool, workers: spec.workers }, 'training job queued');
      return read(spec.id, principal);
    });

    app.get('/v1/training/jobs/:id', { schema: { params: paramsSchema } }, async (request) =>
      read(request.params.id, principalOf(request)),
    );

    app.post('/v1/training/jobs/:id/cancel', { schema: { params: paramsSchema } }, async (request) => {
      const { id } = request.params;
      const principal = principalOf(request);
      const pool = await store.poolOf(id);
      const state = pool === undefined ? undefined : await store.get(pool, id);
      if (pool === undefined || !state || !canSee(principal, state.spec.tenant)) throw notFound(id);
      const r = await store.cancel(pool, id, 'cancelled by request', now());
      if (r.status === undefined) throw notFound(id);
      if (!r.moved) throw new FleetError('conflict', `training job ${id} is ${r.status} and cannot be cancelled`);
      return read(id, principal);
    });
  };
