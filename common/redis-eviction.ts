/**
 * Redis must never evict interfleet's keys: a queued job, a batch's cursor or
 * a gang's state that an LRU policy drops under memory pressure is work lost
 * without a trace (BullMQ's own guidance: `maxmemory-policy noeviction`, so
 * that a full Redis refuses writes, which the API answers with 503). Every
 * role checks at start, and again whenever its connection comes back (a
 * Redis restarted with another config).
 *
 * The policy is read from `INFO memory`, not CONFIG GET: managed Redis
 * (Memorystore, OCI Cache) often disables CONFIG but always answers INFO.
 */
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from './logger.ts';
import type { RedisClient } from './redis.ts';

export type EvictionCheck = 'warn' | 'refuse' | 'off';

export class EvictionPolicyError extends Error {
  readonly code = 'redis_evicts';
  constructor(message: string) {
    super(message);
    this.name = 'EvictionPolicyError';
  }
}

/** The `maxmemory_policy` field of an INFO memory reply; undefined when absent. */
export function policyFromInfo(info: string): string | undefined {
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
}

/** What to say about the policies read (one per node), or undefined when every node is noeviction. */
export function evictionProblem(
  policies: ReadonlyArray<{ node: string; policy: string | undefined }>,
): string | undefined {
  const bad = policies.filter((p) => p.policy !== undefined && p.policy !== 'noeviction');
  if (bad.length === 0) return undefined;
  const which = bad.map((p) => `${p.node} has maxmemory-policy ${p.policy}`).join('; ');
  return (
    `Redis may evict interfleet's keys (${which}): queued jobs and batch state would be lost silently ` +
    'under memory pressure. Set maxmemory-policy noeviction (redis.conf, CONFIG SET, or the managed ' +
    "service's parameter), or set redis.evictionCheck to say otherwise."
  );
}

const isCluster = (r: RedisClient): r is Cluster => 'nodes' in r && typeof r.nodes === 'function';

async function readPolicies(redis: RedisClient): Promise<Array<{ node: string; policy: string | undefined }>> {
  const nodes: Redis[] = isCluster(redis) ? redis.nodes('master') : [redis];
  return Promise.all(
    nodes.map(async (n) => ({
      node: `${n.options.host ?? '?'}:${n.options.port ?? '?'}`,
      policy: policyFromInfo(await n.info('memory')),
    })),
  );
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Checks once now (bounded: a Redis that does not answer yet is not this check's business, and is
 * logged as unchecked) and again on every reconnect. `refuse` rejects when the check at start finds
 * an evicting policy; on a reconnect the problem is logged at error level whatever the mode, since
 * stopping a running role would lose more than it saves.
 */
export async function checkEviction(
  redis: RedisClient,
  mode: EvictionCheck,
  logger: Logger,
  timeoutMs = 5000,
): Promise<void> {
  if (mode === 'off') return;
  const check = async (): Promise<string | undefined> => evictionProblem(await readPolicies(redis));
  // Registered after the check at start, so that the first connection is not checked twice.
  const onReady = (): void => {
    check().then(
      (problem) => problem && logger.error({ problem }, 'Redis eviction policy'),
      (err: unknown) => logger.debug({ err }, 'Redis eviction policy not checked after reconnect'),
    );
  };
  let problem: string | undefined;
  try {
    problem = await withTimeout(check(), timeoutMs);
  } catch (err) {
    logger.warn({ err }, 'Redis eviction policy not checked at start (Redis did not answer); checked on reconnect');
    redis.on('ready', onReady);
    return;
  }
  if (problem !== undefined && mode === 'refuse') throw new EvictionPolicyError(problem);
  if (problem !== undefined) logger.error({ problem }, 'Redis eviction policy');
  redis.on('ready', onReady);
}
