/**
 * Names of every queue and key interfleet uses. Each name carries a Redis
 * Cluster hash tag ({…}) so that the keys one Lua script or MULTI touches sit
 * in one slot: the same code runs on a single Redis, Memorystore or a Cluster.
 */
import { createHash } from 'node:crypto';

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

/**
 * The BullMQ queue of batch control jobs (plan, finalise, cron launches),
 * processed by producer replicas. Not `{batches}`: BullMQ's own keys
 * (`:active`, `:wait`…) must not meet the batch index keys below.
 */
export const batchControlQueue = '{batch-control}';

/** One batch: its hash and the keys that must share its slot (Lua touches them together). */
export function batchKeys(prefix: string, batchId: string) {
  const base = `${prefix}:{batch.${batchId}}`;
  return {
    /** Hash: spec, status, timestamps, cursor and counters. */
    state: base,
    /** Bitmap: chunk index → settled (done, skipped or failed for good). */
    settled: `${base}:settled`,
    /** Bitmap: chunk index → both parts written (its lines are in the parts). */
    done: `${base}:done`,
    /** Hash: chunk index → why the chunk failed for good. */
    chunkErrors: `${base}:chunk-errors`,
    /** Hash: chunk index → JSON array of its finished segments (a chunk that yielded; ChunkSegment). */
    segments: `${base}:segments`,
    /** Highest scheduler epoch that advanced this batch's cursor. */
    fence: `${base}:fence`,
  };
}

/** Batch indexes: every batch, and the ones not yet in a final state (sorted sets, members ordered by id). */
export function batchIndexKeys(prefix: string): { all: string; open: string } {
  return { all: `${prefix}:{batch-index}:all`, open: `${prefix}:{batch-index}:open` };
}

/** Which batch a cron firing created (SET NX, so a retried firing finds it), in the batch index's slot. */
export function cronFiringKey(prefix: string, schedule: string, firedAt: Date): string {
  return `${prefix}:{batch-index}:cron:${schedule}:${firedAt.getTime()}`;
}

/** What the scheduler leader last decided for a pool, and why (`interfleet scheduler explain`); one string key each. */
export function explainKey(
  prefix: string,
  loop: 'budget' | 'admission' | 'training' | 'autoscale',
  pool: string,
): string {
  return `${prefix}:{scheduler}:explain:${loop}:${pool}`;
}

/** How long an explain record lives: after the leader died, explain says how old it is rather than nothing. */
export const EXPLAIN_TTL_MS = 60_000;

/**
 * The batch an Idempotency-Key created, per tenant (SET NX), in the batch
 * index's slot. The key is hashed: callers choose it, and it may be long.
 */
export function idempotencyClaimKey(prefix: string, tenant: string, key: string): string {
  const digest = createHash('sha256').update(key).digest('hex').slice(0, 32);
  return `${prefix}:{batch-index}:idem:${tenant}:${digest}`;
}

/** Job id of chunk `index` of a batch on `bulk.<pool>`: deterministic, so a repeated admission is a no-op. */
export function chunkJobId(batchId: string, index: number): string {
  return `${batchId}-c${index}`;
}

/**
 * A pool's training gangs: every key in the pool's own slot, so that one Lua
 * call can check the pool's fence and move a gang (admission), or settle a
 * rank and advance the gang's round. Not `{train.<pool>}`: that is BullMQ's.
 */
export function trainingKeys(prefix: string, pool: string) {
  const base = `${prefix}:{training.${pool}}`;
  return {
    /** Sorted set: gangs not yet closed by the scheduler (score: creation time). */
    open: `${base}:open`,
    /** Highest scheduler epoch that admitted (or claimed) gangs of this pool. */
    fence: `${base}:fence`,
    /** Sorted set: ended gangs whose results (manifest, webhook) are not settled yet (score: when they ended). */
    finishing: `${base}:finishing`,
    /** Hash: spec, status, round and the round's counters. */
    state: (jobId: string) => `${base}:job:${jobId}`,
    /** Hash: `<round>:<rank>` → JSON record of that rank's run. */
    ranks: (jobId: string) => `${base}:job:${jobId}:ranks`,
  };
}

/** Hash: training job id → its pool (where GET /v1/training/jobs/:id finds it). */
export function trainingIndexKey(prefix: string): string {
  return `${prefix}:{training-index}:pools`;
}

/**
 * Job id of one rank of one round on `train.<pool>`: deterministic, so a repeated admission is a
 * no-op; a restarted gang's run `restart` (gang mode) has ids of its own.
 */
export function rankJobId(jobId: string, round: number, rank: number, restart = 0): string {
  return restart === 0 ? `${jobId}-r${round}-k${rank}` : `${jobId}-r${round}-k${rank}-g${restart}`;
}

/** The reduce job of a round (`rounds` mode): one per round, so that adding it again is a no-op. */
export function reduceJobId(jobId: string, round: number): string {
  return `${jobId}-r${round}-reduce`;
}

/** The results job of an ended training job (manifest, evaluation, registration): one per job. */
export function finishJobId(jobId: string): string {
  return `${jobId}-finish`;
}

/** Hash: trained model name → JSON TrainedModel (the registry `sentiment` requests name models from). */
export function trainedModelsKey(prefix: string): string {
  return `${prefix}:{trained-models}`;
}
