/**
 * `GET /v1/scheduler/explain[?pool=<name>]`: what the scheduler leader last
 * decided for each pool and why (bulk budget, batch admission, training gang
 * admission, autoscaling), read from
 * the records it writes after each pass. A record the leader has not
 * refreshed for a minute has expired: that pool shows null, which says "no
 * leader is deciding" more honestly than a stale answer would.
 */
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../common/config.ts';
import {
  admissionExplanationSchema,
  autoscaleExplanationSchema,
  budgetExplanationSchema,
  trainingExplanationSchema,
  type SchedulerExplain,
} from '../../common/contracts/explain.ts';
import { FleetError } from '../../common/errors.ts';
import type { RedisClient } from '../../common/redis.ts';
import { explainKey } from '../../common/topology.ts';

const querySchema = z.object({ pool: z.string().min(1).optional() }).strict();

/** A record that does not parse (another version's leader) reads as absent rather than failing the call. */
function parsed<T>(schema: z.ZodType<T>, raw: string | null): T | null {
  if (raw === null) return null;
  try {
    const result = schema.safeParse(JSON.parse(raw));
    return result.success ? result.data : null;
  } catch {
    return null;
  }
}

export const schedulerExplainRoute =
  (config: Config, redis: RedisClient, now: () => number = Date.now): FastifyPluginAsync =>
  async (app) => {
    app.get('/v1/scheduler/explain', async (req): Promise<SchedulerExplain> => {
      const query = querySchema.safeParse(req.query);
      if (!query.success) {
        const issue = query.error.issues[0]!;
        const param = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? issue.keys[0] : undefined);
        throw new FleetError('bad_request', `bad query: ${param ? `${param}: ` : ''}${issue.message}`, { param });
      }
      const { pool } = query.data;
      const pools = config.pools.map((p) => p.name).filter((p) => pool === undefined || p === pool);
      if (pools.length === 0) throw new FleetError('not_found', `no pool named ${JSON.stringify(pool)}`);
      const prefix = config.redis.prefix;
      const loops = ['budget', 'admission', 'training', 'autoscale'] as const;
      const keys = pools.flatMap((p) => loops.map((loop) => explainKey(prefix, loop, p)));
      const raw = await redis.mget(...keys).catch((err: unknown) => {
        throw new FleetError('unavailable', 'Redis is unreachable; try again shortly', {
          cause: err,
          retryAfterMs: config.producer.retryAfterMs,
        });
      });
      return {
        object: 'scheduler.explain',
        now: now(),
        pools: pools.map((p, i) => ({
          pool: p,
          budget: parsed(budgetExplanationSchema, raw[loops.length * i] ?? null),
          admission: parsed(admissionExplanationSchema, raw[loops.length * i + 1] ?? null),
          training: parsed(trainingExplanationSchema, raw[loops.length * i + 2] ?? null),
          autoscale: parsed(autoscaleExplanationSchema, raw[loops.length * i + 3] ?? null),
        })),
      };
    });
  };
