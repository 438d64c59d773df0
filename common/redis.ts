/**
 * Redis connections, built from the typed config. Three flavours, because
 * BullMQ and the reply path want different failure behaviour:
 * - `command`: producers and request paths. No offline queue and a command
 *   timeout, so an outage fails a request in milliseconds (→ 503) instead of
 *   hanging it.
 * - `worker`: BullMQ workers. Retries forever (`maxRetriesPerRequest: null`,
 *   BullMQ requires it) so a blip does not kill the consumer.
 * - `blocking`: a dedicated connection for one blocking reader (BLMPOP).
 * Reconnect backoff is capped: ioredis lets it grow to 20 s, which leaves
 * workers idle long after Redis is back.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.ts';

export type RedisClient = Redis | Cluster;
export type ConnectionFlavour = 'command' | 'worker' | 'blocking';

export interface RedisFactoryOptions {
  connectionName?: string;
  /** Fail a command that gets no answer in this time (command flavour only). */
  commandTimeoutMs?: number;
}

function baseOptions(config: Config['redis'], flavour: ConnectionFlavour): RedisOptions {
  const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 10), config.maxReconnectDelayMs);
  switch (flavour) {
    case 'command':
      return { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy, lazyConnect: false };
    case 'worker':
    case 'blocking':
      return { enableOfflineQueue: true, maxRetriesPerRequest: null, retryStrategy };
  }
}

export function createRedis(
  config: Config['redis'],
  flavour: ConnectionFlavour,
  opts: RedisFactoryOptions = {},
): RedisClient {
  const options: RedisOptions = {
    ...baseOptions(config, flavour),
    connectionName: opts.connectionName,
    ...(flavour === 'command' && opts.commandTimeoutMs !== undefined ? { commandTimeout: opts.commandTimeoutMs } : {}),
  };
  if (config.cluster) {
    const seed = new URL(config.url);
    return new Cluster([{ host: seed.hostname, port: Number(seed.port || 6379) }], {
      enableOfflineQueue: options.enableOfflineQueue,
      clusterRetryStrategy: options.retryStrategy as (times: number) => number,
      redisOptions: {
        ...options,
        username: decodeURIComponent(seed.username) || undefined,
        password: decodeURIComponent(seed.password) || undefined,
        tls: seed.protocol === 'rediss:' ? {} : undefined,
      },
    });
  }
  return new Redis(config.url, options);
}

/** Resolves once the client is connected, or rejects after `timeoutMs`. */
export async function waitForRedis(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis did not become ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
    };
    client.on('ready', onReady);
  });
}

/** Quits politely, and disconnects hard if the server does not answer. */
export async function closeRedis(client: RedisClient): Promise<void> {
  try {
    await Promise.race([client.quit(), new Promise((r) => setTimeout(r, 500))]);
  } catch {
    // already closed
  }
  client.disconnect();
}
