/**
 * `GET /v1/training/jobs/:id/logs[?round=&rank=&tail=]`: the lines each rank
 * logged, which are the metric lines its command printed (the training lane
 * writes them as the log of the rank's `train.<pool>` job, id
 * `<job>-r<round>-k<rank>`; gpu-worker/training/training-lane.ts). By default
 * every rank of the round running, or else the last round a rank started
 * in, the last 100 lines of each. A rank's log lives as long as its BullMQ
 * job (a day after it completes, a week after it fails).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../common/config.ts';
import { maxGangSize, maxRounds, trainingJobIdSchema } from '../../common/contracts/training.ts';
import { FleetError } from '../../common/errors.ts';
import { canSee, principalOf } from '../auth/index.ts';
import { settleWithin } from '../../common/process.ts';
import { PoolQueues } from '../../common/pool-queues.ts';
import type { RedisClient } from '../../common/redis.ts';
import { rankJobId } from '../../common/topology.ts';
import { TrainingStore } from '../../common/training/training-state.ts';

export const DEFAULT_LOG_TAIL = 100;
export const MAX_LOG_TAIL = 10_000;

const paramsSchema = z.object({ id: trainingJobIdSchema });

/** A whole number from the query string, with messages that name the parameter. */
const count = (name: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be an integer`)
    .min(min, `${name} is at least ${min}`)
    .max(max, `${name} is at most ${max}`);

const querySchema = z.strictObject(
  {
    round: count('round', 1, maxRounds).optional(),
    rank: count('rank', 0, maxGangSize - 1).optional(),
    tail: count('tail', 1, MAX_LOG_TAIL).default(DEFAULT_LOG_TAIL),
  },
  {
    error: (iss) =>
      iss.code === 'unrecognized_keys' ? `unsupported query parameter(s): ${iss.keys.join(', ')}` : undefined,
  },
);

const notFound = (id: string): FleetError =>
  new FleetError('not_found', `No training job found with id '${id}'`, { param: 'id' });

export const trainingLogsRoutes =
  (config: Config, redis: RedisClient): FastifyPluginAsyncZod =>
  async (app) => {
    const store = new TrainingStore(redis, config.redis.prefix);
    // One queue handle per pool, made on first use, on the API's shared connection.
    const queues = new PoolQueues('train', redis, config.redis.prefix, (err) => app.log.debug({ err }, 'queue error'));
    app.addHook('onClose', async () => {
      // Bounded: during a Redis outage BullMQ's close can wait for a reconnect that never comes.
      await settleWithin(queues.close(), 2000);
    });

    app.get('/v1/training/jobs/:id/logs', { schema: { params: paramsSchema } }, async (request) => {
      const { id } = request.params;
      const parsed = querySchema.safeParse(request.query);
      if (!parsed.success) {
        const issues = parsed.error.issues;
        const details = issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message));
        throw new FleetError('bad_request', `invalid query: ${details.join('; ')}`, {
          param: issues[0]?.path.join('.') || undefined,
        });
      }
      const query = parsed.data;
      const pool = await store.poolOf(id);
      const state = pool === undefined ? undefined : await store.get(pool, id);
      // Another tenant's job answers as a missing one.
      if (!state || !canSee(principalOf(request), state.spec.tenant)) throw notFound(id);
      const { spec } = state;
      if (query.round !== undefined && query.round > spec.rounds) {
        throw new FleetError('bad_request', `round: training job ${id} has ${spec.rounds} round(s)`, {
          param: 'round',
        });
      }
      if (query.rank !== undefined && query.rank >= spec.workers) {
        throw new FleetError('bad_request', `rank: training job ${id} has ranks 0 to ${spec.workers - 1}`, {
          param: 'rank',
        });
      }
      const records = await store.ranks(spec.pool, id);
      // A queued or ended job's round may not have started (the next round, or one cancelled while queued).
      const round =
        query.round ??
        (state.status === 'running' || state.status === 'reducing'
          ? state.round
          : (records.at(-1)?.round ?? state.round));
      const ranks = query.rank === undefined ? Array.from({ length: spec.workers }, (_, k) => k) : [query.rank];
      const queue = queues.get(spec.pool);
      return {
        object: 'training.logs' as const,
        id,
        round,
        tail: query.tail,
        ranks: await Promise.all(
          ranks.map(async (rank) => {
            const record = records.find((r) => r.round === round && r.rank === rank);
            // A restarted gang's run has job ids of its own (gang mode).
            const restart = record?.restart ?? (round === state.round ? state.restarts : 0);
            const { logs, count } = await queue.getJobLogs(rankJobId(id, round, rank, restart), -query.tail, -1);
            return { rank, status: record?.state ?? null, total_lines: count, lines: logs };
          }),
        ),
      };
    });
  };
