/**
 * `GET /v1/models` (the pools, OpenAI's list shape), `/healthz` (the process
 * answers) and `/readyz` (Redis answers and every pool has a live worker).
 */
import type { FastifyPluginAsync } from 'fastify';
import { backendTasks } from '../../common/backend-tasks.ts';
import type { Config } from '../../common/config.ts';
import type { RedisClient } from '../../common/redis.ts';
import { readLiveWorkers } from '../fleet-view.ts';

export const fleetRoutes =
  (config: Config, redis: RedisClient, now: () => number = Date.now): FastifyPluginAsync =>
  async (app) => {
    const pools = config.pools.map((p) => p.name);
    const created = Math.floor(now() / 1000);

    app.get('/v1/models', async () => {
      const live = await readLiveWorkers(redis, config.redis.prefix, pools, now()).catch(() => undefined);
      return {
        object: 'list',
        data: config.pools.map((p) => ({
          id: p.name,
          object: 'model',
          created,
          owned_by: 'interfleet',
          backend: p.backend,
          tasks: backendTasks[p.backend],
          workers: live?.get(p.name)?.length ?? null,
        })),
      };
    });

    app.get('/healthz', async () => ({ status: 'ok' }));

    app.get('/readyz', async (_req, reply) => {
      let live: Awaited<ReturnType<typeof readLiveWorkers>>;
      try {
        live = await readLiveWorkers(redis, config.redis.prefix, pools, now());
      } catch (err) {
        reply.header('retry-after', '1');
        return reply.code(503).send({ ready: false, redis: 'unreachable', reason: (err as Error).message });
      }
      const workers = Object.fromEntries(
        pools.map((p) => [p, live.get(p)?.filter((h) => h.state === 'ready').length ?? 0]),
      );
      const missing = pools.filter((p) => workers[p] === 0);
      const ready = missing.length === 0;
      if (!ready) reply.header('retry-after', '1');
      return reply.code(ready ? 200 : 503).send({
        ready,
        redis: 'ok',
        workers,
        ...(ready ? {} : { reason: `no live worker for pool(s): ${missing.join(', ')}` }),
      });
    });
  };
