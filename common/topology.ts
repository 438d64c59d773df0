/**
 * Names of every queue and key interfleet uses. Each name carries a Redis
 * Cluster hash tag ({…}) so that the keys one Lua script or MULTI touches sit
 * in one slot: the same code runs on a single Redis, Memorystore or a Cluster.
 */
export type QueueKind = 'rt' | 'bulk' | 'train';

/** BullMQ queue name for a kind and pool, e.g. `{rt.default}`. */
export function queueName(kind: QueueKind, pool: string): string {
  return `{${kind}.${pool}}`;
}

/** The human name Bull Board shows for a queue, without the hash tag braces. */
export function queueDisplayName(kind: QueueKind, pool: string): string {
  return `${kind}.${pool}`;
}

/** BullMQ's prefix: every queue key is `<prefix>:{<kind>.<pool>}:<suffix>`. */
export function bullPrefix(prefix: string): string {
  return prefix;
}

/** A producer replica's reply inbox: one list, read by one blocking reader. */
export function inboxKey(prefix: string, replicaId: string): string {
  return `${prefix}:{inbox.${replicaId}}`;
}

/** Heartbeats of a pool's workers: one hash, field = worker id, value = JSON record. */
export function workersKey(prefix: string, pool: string): string {
  return `${prefix}:{fleet.${pool}}:workers`;
}

/** The scheduler's leader lease and its fencing-token counter share a slot. */
export function leaderKeys(prefix: string): { lease: string; epoch: string } {
  return { lease: `${prefix}:{scheduler}:leader`, epoch: `${prefix}:{scheduler}:epoch` };
}

/** Pub/sub channel on which producers ask workers to stop a request (caller gone, deadline). */
export function cancelChannel(prefix: string): string {
  return `${prefix}:{cancel}`;
}
