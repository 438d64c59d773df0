/**
 * Per-tenant request limits over the API (@fastify/rate-limit), counted in
 * Redis so that every producer replica shares one budget per tenant. A
 * tenant past its limit gets 429 with Retry-After in OpenAI's error shape.
 * When Redis does not answer the request goes on (skipOnError) and the route
 * answers 503 itself: a limit must not turn an outage into a hang.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../common/config.ts';
import { FleetError } from '../../common/errors.ts';
import type { RedisClient } from '../../common/redis.ts';
import { principalOf } from './request-principal.ts';

export type RateLimitConfig = Config['producer']['rateLimit'];

/** Limits apply when configured so, and by default when auth is on (with auth off every caller is one tenant). */
export const rateLimitEnabled = (cfg: RateLimitConfig, authEnabled: boolean): boolean => cfg.enabled ?? authEnabled;

export const tenantMax = (cfg: RateLimitConfig, tenant: string): number => cfg.tenants[tenant]?.max ?? cfg.max;

/** Registers the limit on every route of `api` (an encapsulated context; the auth hook has run before it). */
export async function registerRateLimit(
  api: FastifyInstance,
  cfg: RateLimitConfig,
  redis: RedisClient,
  prefix: string,
): Promise<void> {
  await api.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    keyGenerator: (request) => principalOf(request).tenant,
    max: (_request, tenant) => tenantMax(cfg, tenant),
    timeWindow: cfg.windowMs,
    redis,
    nameSpace: `${prefix}:ratelimit:`,
    skipOnError: true,
    errorResponseBuilder: (request, ctx) =>
      new FleetError(
        'overloaded',
        `Rate limit reached for tenant '${principalOf(request).tenant}': ${ctx.max} requests per ${cfg.windowMs / 1000} s; try again in ${ctx.after}`,
        { retryAfterMs: Math.max(1000, ctx.ttl) },
      ),
  });
}
