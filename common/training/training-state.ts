/**
 * A training gang as Redis holds it: one hash per gang and one hash of its
 * ranks' records, both in the pool's slot (topology.ts trainingKeys), beside
 * the pool's open index and fence. Producer (create, cancel), scheduler
 * (admit, fenced; close) and gpu-worker (start and settle a rank) all write
 * through the Lua scripts here, so every move is a compare-and-set.
 *
 * Life of a gang:
 *   queued (round r) ──admit, fenced──► running (round r) ──every rank succeeded──► queued (round r+1)
 *       │                                   │   └── … of the last round ──► succeeded
 *       │                                   └── a rank failed for good ──► failed (reason)
 *       └────────── cancel (any open state) ──────► cancelled
 * In `rounds` mode a round's last success goes to `reducing (round r)` instead: the reduce job
 * writes the round's model (create-only, in storage) and then moves it on, to queued (round r+1)
 * or, after the last round, succeeded; a reduce that fails for good fails the gang.
 * In `gang` mode a rank that fails, or starts a second time in one run of the
 * gang (its first run was lost with its worker), or that the leader finds
 * lost, does not fail the gang while it has restarts left (`max_restarts`):
 * the gang goes back to queued for the same round, its records of the round
 * are cleared, `restarts` counts one more, and the run before is stopped
 * (`stop_restart` tells the leader which). Every rank job carries the run it
 * belongs to (`restart`): what a rank of an earlier run reports is ignored.
 * A round's counters (`round_started`, `round_ok`) move once per rank: a
 * rank's record is written at its start and settled once, so a rank run
 * twice (a retry, a stalled lock) counts once, and a late settlement of a
 * gang that moved on (failed, cancelled, next round) changes nothing.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  rankRecordSchema,
  trainingSpecSchema,
  type RankRecord,
  type RankRecordInput,
  type TrainingSpec,
} from '../contracts/training.ts';
import type { RedisClient } from '../redis.ts';
import { trainingIndexKey, trainingKeys } from '../topology.ts';

export const trainingStatuses = ['queued', 'running', 'reducing', 'succeeded', 'failed', 'cancelled'] as const;
export type TrainingStatus = (typeof trainingStatuses)[number];
export const isFinal = (s: TrainingStatus): boolean => s === 'succeeded' || s === 'failed' || s === 'cancelled';

export interface TrainingState {
  spec: TrainingSpec;
  status: TrainingStatus;
  /** The round waiting (queued) or running; the last one once final. */
  round: number;
  /** Ranks of this round that started, and that succeeded. */
  roundStarted: number;
  roundSucceeded: number;
  /** Why it failed or was cancelled. */
  reason: string | null;
  /** Why the scheduler last held it (a gang-admission HoldReason), while queued. */
  waiting: string | null;
  admittedAt: number | null;
  endedAt: number | null;
  /** Gang restarts so far (gang mode): the run of the round now queued or running. */
  restarts: number;
  /** Why the gang was last restarted. */
  restartReason: string | null;
  /** A run the leader has yet to stop (its queued ranks removed, running ones signalled); null: none. */
  stopRestart: number | null;
}

/** Where a gang's rank 0 listens for its peers (MASTER_ADDR, MASTER_PORT), for one run of one round. */
export const masterSchema = z.object({
  round: z.number().int().min(1),
  restart: z.number().int().min(0),
  addr: z.string().min(1),
  port: z.number().int().min(1).max(65535),
});
export type Master = z.infer<typeof masterSchema>;

export interface RankEntry extends RankRecord {
  round: number;
  rank: number;
}

/** `train_<12 hex ms><8 hex random>`: sorts by creation time. */
export function newTrainingJobId(now: number): string {
  return `train_${now.toString(16).padStart(12, '0')}${randomBytes(4).toString('hex')}`;
}

export function decodeTraining(raw: Record<string, string>): TrainingState | undefined {
  if (raw.spec === undefined) return undefined;
  const num = (f: string): number | null => (raw[f] === undefined || raw[f] === '' ? null : Number(raw[f]));
  return {
    spec: trainingSpecSchema.parse(JSON.parse(raw.spec)),
    status: z.enum(trainingStatuses).parse(raw.status),
    round: num('round') ?? 1,
    roundStarted: num('round_started') ?? 0,
    roundSucceeded: num('round_ok') ?? 0,
    reason: raw.reason || null,
    waiting: raw.waiting || null,
    admittedAt: num('admitted_at'),
    endedAt: num('ended_at'),
    restarts: num('restarts') ?? 0,
    restartReason: raw.restart_reason || null,
    stopRestart: num('stop_restart'),
  };
}

/*
 * KEYS[1] pool fence. ARGV[1] epoch. Returns 1, or -1 when a newer leader has written to the pool.
 */
const FENCE = `
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < seen then return -1 end
if epoch > seen then redis.call('SET', KEYS[1], epoch) end
return 1
`;

/*
 * KEYS[1] pool fence, KEYS[2] state. ARGV[1] epoch, ARGV[2] round, ARGV[3] now.
 * Returns 1 admitted, 0 the gang is no longer queued for that round, -1 stale epoch.
 */
const ADMIT = `
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < seen then return -1 end
if epoch > seen then redis.call('SET', KEYS[1], epoch) end
local st = redis.call('HMGET', KEYS[2], 'status', 'round')
if st[1] ~= 'queued' or tonumber(st[2]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'status', 'running', 'round_started', 0, 'round_ok', 0, 'waiting', '', 'admitted_at', ARGV[3])
return 1
`;

/*
 * The end of a gang's run of a round that cannot go on (gang mode): back to queued for the same
 * round with its records of the round cleared, or failed once the restarts are spent.
 * Returns 6 restarting, 2 failed.
 */
const RESTART_OR_FAIL = `
local function restart_or_fail(state, ranks, round, reason, now)
  local f = redis.call('HMGET', state, 'restarts', 'max_restarts', 'workers')
  local restarts = tonumber(f[1] or '0')
  local allowed = tonumber(f[2] or '0')
  if restarts >= allowed then
    local why = reason
    if restarts > 0 then why = reason .. ' (after ' .. restarts .. ' gang restarts, max_restarts ' .. allowed .. ')' end
    redis.call('HSET', state, 'status', 'failed', 'reason', why, 'ended_at', now)
    return 2
  end
  for k = 0, tonumber(f[3]) - 1 do redis.call('HDEL', ranks, round .. ':' .. k) end
  redis.call('HSET', state, 'status', 'queued', 'restarts', restarts + 1, 'round_started', 0, 'round_ok', 0,
    'restart_reason', reason, 'stop_restart', restarts, 'waiting', '')
  return 6
end
`;

/*
 * KEYS[1] state, KEYS[2] ranks. ARGV[1] round, ARGV[2] rank, ARGV[3] the running record (JSON),
 * ARGV[4] the gang run (restarts) it belongs to, ARGV[5] now.
 * Returns 1 run it, 0 this rank already ended in this round, -1 the gang is not running this
 * round (or runs it again, later), -2 it started before in this run of a gang (which is lost):
 * the gang restarts, -3 … and has no restart left: it failed.
 */
const START_RANK = `${RESTART_OR_FAIL}
local st = redis.call('HMGET', KEYS[1], 'status', 'round', 'restarts', 'mode')
if st[1] ~= 'running' or tonumber(st[2]) ~= tonumber(ARGV[1]) then return -1 end
if tonumber(st[3] or '0') ~= tonumber(ARGV[4]) then return -1 end
local field = ARGV[1] .. ':' .. ARGV[2]
local cur = redis.call('HGET', KEYS[2], field)
if cur and cjson.decode(cur)['state'] ~= 'running' then return 0 end
if cur and st[4] == 'gang' then
  local why = 'rank ' .. ARGV[2] .. ' of round ' .. ARGV[1] .. ' started again: its run was lost (its worker died or drained)'
  if restart_or_fail(KEYS[1], KEYS[2], ARGV[1], why, ARGV[5]) == 6 then return -2 end
  return -3
end
redis.call('HSET', KEYS[2], field, ARGV[3])
if not cur then redis.call('HINCRBY', KEYS[1], 'round_started', 1) end
return 1
`;

/*
 * KEYS[1] state, KEYS[2] ranks. ARGV[1] round, ARGV[2] rank, ARGV[3] the final record (JSON),
 * ARGV[4] succeeded|failed, ARGV[5] reason, ARGV[6] now, ARGV[7] the gang run (restarts),
 * ARGV[8] '1' when a failure is final (no gang restart can help: the program may not run, the data
 * cannot be read).
 * Returns -1 ignored (the gang is not running this round, or not this run of it), 0 already
 * settled, 1 recorded, 2 the gang failed, 3 the round ended and the next one is queued, 4 the gang
 * succeeded, 5 the round ended and its reduce is due (rounds mode), 6 the gang restarts (gang mode).
 */
const SETTLE_RANK = `${RESTART_OR_FAIL}
local st = redis.call('HMGET', KEYS[1], 'status', 'round', 'workers', 'rounds', 'mode', 'restarts')
local round = tonumber(ARGV[1])
if st[1] ~= 'running' or tonumber(st[2]) ~= round then return -1 end
if tonumber(st[6] or '0') ~= tonumber(ARGV[7]) then return -1 end
local field = ARGV[1] .. ':' .. ARGV[2]
local cur = redis.call('HGET', KEYS[2], field)
if cur and cjson.decode(cur)['state'] ~= 'running' then return 0 end
redis.call('HSET', KEYS[2], field, ARGV[3])
if not cur then redis.call('HINCRBY', KEYS[1], 'round_started', 1) end
if ARGV[4] == 'failed' and st[5] == 'gang' and ARGV[8] ~= '1' then
  return restart_or_fail(KEYS[1], KEYS[2], ARGV[1], ARGV[5], ARGV[6])
end
if ARGV[4] == 'failed' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', ARGV[5], 'ended_at', ARGV[6])
  return 2
end
if redis.call('HINCRBY', KEYS[1], 'round_ok', 1) < tonumber(st[3]) then return 1 end
if st[5] == 'rounds' then
  redis.call('HSET', KEYS[1], 'status', 'reducing')
  return 5
end
if round >= tonumber(st[4]) then
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'ended_at', ARGV[6])
  return 4
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'round', round + 1, 'round_started', 0, 'round_ok', 0)
return 3
`;

/*
 * KEYS[1] state. ARGV[1] round, ARGV[2] now. The reduce of `round` wrote its model.
 * Returns 1 the next round is queued, 2 the gang succeeded, 0 it was not reducing that round.
 */
const FINISH_REDUCE = `
local st = redis.call('HMGET', KEYS[1], 'status', 'round', 'rounds')
local round = tonumber(ARGV[1])
if st[1] ~= 'reducing' or tonumber(st[2]) ~= round then return 0 end
if round >= tonumber(st[3]) then
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'ended_at', ARGV[2])
  return 2
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'round', round + 1, 'round_started', 0, 'round_ok', 0)
return 1
`;

/*
 * KEYS[1] state. ARGV[1] round, ARGV[2] reason, ARGV[3] now. Returns 1 failed, 0 not reducing that round.
 */
const FAIL_REDUCE = `
local st = redis.call('HMGET', KEYS[1], 'status', 'round')
if st[1] ~= 'reducing' or tonumber(st[2]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', ARGV[2], 'ended_at', ARGV[3])
return 1
`;

/*
 * KEYS[1] state. ARGV[1] reason, ARGV[2] now. Returns {1, old} cancelled, {0, current} not ('' if missing).
 */
const CANCEL = `
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
if cur ~= 'queued' and cur ~= 'running' and cur ~= 'reducing' then return {0, cur} end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'reason', ARGV[1], 'ended_at', ARGV[2], 'waiting', '')
return {1, cur}
`;

/*
 * KEYS[1] state, KEYS[2] ranks. ARGV[1] round, ARGV[2] the gang run (restarts), ARGV[3] reason,
 * ARGV[4] now. The leader found a rank of this run lost. Returns 6 restarting, 2 failed, 0 the gang
 * is no longer running that run.
 */
const RESTART = `${RESTART_OR_FAIL}
local st = redis.call('HMGET', KEYS[1], 'status', 'round', 'restarts')
if st[1] ~= 'running' or tonumber(st[2]) ~= tonumber(ARGV[1]) or tonumber(st[3] or '0') ~= tonumber(ARGV[2]) then
  return 0
end
return restart_or_fail(KEYS[1], KEYS[2], ARGV[1], ARGV[3], ARGV[4])
`;

/*
 * KEYS[1] state. ARGV[1] round, ARGV[2] the gang run (restarts), ARGV[3] the master (JSON).
 * Returns 1 published, 0 the gang is not running that run of that round.
 */
const PUBLISH_MASTER = `
local st = redis.call('HMGET', KEYS[1], 'status', 'round', 'restarts')
if st[1] ~= 'running' or tonumber(st[2]) ~= tonumber(ARGV[1]) or tonumber(st[3] or '0') ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'master', ARGV[3])
return 1
`;

/* KEYS[1] state. ARGV[1] a run. Forgets that it is to be stopped, if it still is the one. */
const STOPPED = `
if redis.call('HGET', KEYS[1], 'stop_restart') == ARGV[1] then redis.call('HDEL', KEYS[1], 'stop_restart') end
return 1
`;

/*
 * KEYS[1] state. ARGV[1] reason, ARGV[2] now. An open gang whose deadline passed fails.
 * Returns 1 failed, 0 it was already final.
 */
const EXPIRE = `
local cur = redis.call('HGET', KEYS[1], 'status')
if cur ~= 'queued' and cur ~= 'running' and cur ~= 'reducing' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', ARGV[1], 'ended_at', ARGV[2], 'waiting', '')
return 1
`;

export type StartRankResult = 'run' | 'already_ended' | 'not_running' | 'gang_restarting' | 'gang_failed';
export type SettleRankResult =
  | 'ignored'
  | 'already'
  | 'recorded'
  | 'gang_failed'
  | 'round_done'
  | 'gang_succeeded'
  | 'reduce_due'
  | 'gang_restarting';
const settleResults: Record<string, SettleRankResult> = {
  '-1': 'ignored',
  '0': 'already',
  '1': 'recorded',
  '2': 'gang_failed',
  '3': 'round_done',
  '4': 'gang_succeeded',
  '5': 'reduce_due',
  '6': 'gang_restarting',
};
const startResults: Record<string, StartRankResult> = {
  '1': 'run',
  '0': 'already_ended',
  '-1': 'not_running',
  '-2': 'gang_restarting',
  '-3': 'gang_failed',
};

/** Training gang state I/O over one Redis client; each call touches one slot. */
export class TrainingStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private keys(pool: string) {
    return trainingKeys(this.prefix, pool);
  }

  /** Creates a gang queued for round 1, opens it, and indexes its pool. */
  async create(spec: TrainingSpec): Promise<void> {
    const valid = trainingSpecSchema.parse(spec);
    const k = this.keys(valid.pool);
    const state = k.state(valid.id);
    if ((await this.redis.hsetnx(state, 'spec', JSON.stringify(valid))) === 0) {
      throw new Error(`training job ${valid.id} already exists`);
    }
    // workers, rounds, mode and max_restarts as plain fields: the Lua transitions read them.
    await this.redis
      .multi()
      .hset(
        state,
        ...['status', 'queued', 'round', 1, 'workers', valid.workers, 'rounds', valid.rounds, 'mode', valid.mode],
        ...['max_restarts', valid.maxRestarts ?? 0, 'restarts', 0],
      )
      .zadd(k.open, valid.createdAt, valid.id)
      .exec();
    // The index lives in another slot: a crash before this leaves a gang that runs but GET cannot find.
    await this.redis.hset(trainingIndexKey(this.prefix), valid.id, valid.pool);
  }

  /** The pool of a gang, from the index (undefined: no such gang). */
  async poolOf(jobId: string): Promise<string | undefined> {
    return (await this.redis.hget(trainingIndexKey(this.prefix), jobId)) ?? undefined;
  }

  async get(pool: string, jobId: string): Promise<TrainingState | undefined> {
    return decodeTraining(await this.redis.hgetall(this.keys(pool).state(jobId)));
  }

  /** Open gangs of a pool, oldest first. */
  async openIds(pool: string): Promise<string[]> {
    return this.redis.zrange(this.keys(pool).open, '0', '-1');
  }

  /** Several gangs of a pool in one round trip; missing ones are dropped, undecodable ones reported and dropped. */
  async getMany(
    pool: string,
    ids: readonly string[],
    onUndecodable: (jobId: string, err: unknown) => void,
  ): Promise<TrainingState[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys(pool).state(id));
    const out: TrainingState[] = [];
    ((await pipe.exec()) ?? []).forEach(([err, raw], i) => {
      if (err) throw err;
      try {
        const state = decodeTraining(raw as Record<string, string>);
        if (state) out.push(state);
      } catch (decodeErr) {
        onUndecodable(ids[i]!, decodeErr);
      }
    });
    return out;
  }

  /** Drops a final gang from its pool's open index. */
  async close(pool: string, jobId: string): Promise<void> {
    await this.redis.zrem(this.keys(pool).open, jobId);
  }

  /** Claims the pool for the leader of `epoch`: false when a newer leader has written to it. */
  async fence(pool: string, epoch: number): Promise<boolean> {
    return Number(await this.redis.eval(FENCE, 1, this.keys(pool).fence, epoch)) === 1;
  }

  /** Moves a queued gang to running for `round`, as leader of `epoch` (fenced by the pool). */
  async admit(pool: string, jobId: string, epoch: number, round: number, now: number) {
    const k = this.keys(pool);
    const r = Number(await this.redis.eval(ADMIT, 2, k.fence, k.state(jobId), epoch, round, now));
    return r === 1 ? 'admitted' : r === 0 ? 'conflict' : 'stale';
  }

  /** Records why the scheduler holds a queued gang (best effort: informational). */
  async setWaiting(pool: string, jobId: string, reason: string): Promise<void> {
    await this.redis.hset(this.keys(pool).state(jobId), 'waiting', reason);
  }

  /** A rank of run `restart` of the gang is starting: whether to run it. */
  async startRank(
    pool: string,
    jobId: string,
    round: number,
    rank: number,
    record: RankRecordInput,
    restart = 0,
  ): Promise<StartRankResult> {
    const k = this.keys(pool);
    const rec = JSON.stringify(rankRecordSchema.parse(record));
    const now = rankRecordSchema.parse(record).startedAt;
    const r = await this.redis.eval(START_RANK, 2, k.state(jobId), k.ranks(jobId), round, rank, rec, restart, now);
    return startResults[String(r)]!;
  }

  /** The leader found a rank of run `restart` lost: the gang restarts, or fails with no restart left. */
  async restartGang(pool: string, jobId: string, round: number, restart: number, reason: string, now: number) {
    const k = this.keys(pool);
    const r = Number(await this.redis.eval(RESTART, 2, k.state(jobId), k.ranks(jobId), round, restart, reason, now));
    return r === 6 ? 'restarting' : r === 2 ? 'failed' : 'ignored';
  }

  /** The leader has stopped run `restart`. */
  async stopped(pool: string, jobId: string, restart: number): Promise<void> {
    await this.redis.eval(STOPPED, 1, this.keys(pool).state(jobId), restart);
  }

  /** Rank 0 of run `master.restart` publishes where it listens; false when the gang is not running that run. */
  async publishMaster(pool: string, jobId: string, master: Master): Promise<boolean> {
    const valid = masterSchema.parse(master);
    const state = this.keys(pool).state(jobId);
    return (
      Number(await this.redis.eval(PUBLISH_MASTER, 1, state, valid.round, valid.restart, JSON.stringify(valid))) === 1
    );
  }

  /** What rank 0 last published (any run). */
  async master(pool: string, jobId: string): Promise<Master | undefined> {
    const raw = await this.redis.hget(this.keys(pool).state(jobId), 'master');
    return raw === null ? undefined : masterSchema.parse(JSON.parse(raw));
  }

  /** Settles a rank's run once; the last success of a round queues the next round (or ends the gang). */
  async settleRank(
    pool: string,
    jobId: string,
    round: number,
    rank: number,
    record: RankRecordInput,
    now: number,
    restart = 0,
    /** A failure no gang restart can help (gang mode fails at once). */
    final = false,
  ): Promise<SettleRankResult> {
    const k = this.keys(pool);
    const rec = rankRecordSchema.parse(record);
    if (rec.state === 'running') throw new Error('settleRank needs a final record');
    const r = await this.redis.eval(
      SETTLE_RANK,
      2,
      k.state(jobId),
      k.ranks(jobId),
      round,
      rank,
      JSON.stringify(rec),
      rec.state,
      rec.reason ?? '',
      now,
      restart,
      final ? 1 : 0,
    );
    return settleResults[String(r)]!;
  }

  /** The reduce of `round` wrote its model: the next round is queued, or the gang succeeded. */
  async finishReduce(pool: string, jobId: string, round: number, now: number) {
    const r = Number(await this.redis.eval(FINISH_REDUCE, 1, this.keys(pool).state(jobId), round, now));
    return r === 1 ? 'next_round' : r === 2 ? 'gang_succeeded' : 'ignored';
  }

  /** The reduce of `round` failed for good: so does the gang. */
  async failReduce(pool: string, jobId: string, round: number, reason: string, now: number): Promise<boolean> {
    return Number(await this.redis.eval(FAIL_REDUCE, 1, this.keys(pool).state(jobId), round, reason, now)) === 1;
  }

  /** Fails an open gang whose deadline passed; false when it was final already. */
  async expire(pool: string, jobId: string, reason: string, now: number): Promise<boolean> {
    return Number(await this.redis.eval(EXPIRE, 1, this.keys(pool).state(jobId), reason, now)) === 1;
  }

  /** Cancels a queued or running gang; the status it found, and whether it moved. */
  async cancel(pool: string, jobId: string, reason: string, now: number) {
    const [moved, status] = (await this.redis.eval(CANCEL, 1, this.keys(pool).state(jobId), reason, now)) as [
      number,
      string,
    ];
    return { moved: moved === 1, status: status === '' ? undefined : (status as TrainingStatus) };
  }

  /** Every rank record, ordered by round then rank. */
  async ranks(pool: string, jobId: string): Promise<RankEntry[]> {
    const raw = await this.redis.hgetall(this.keys(pool).ranks(jobId));
    return Object.entries(raw)
      .map(([field, json]) => {
        const [round, rank] = field.split(':').map(Number) as [number, number];
        return { round, rank, ...rankRecordSchema.parse(JSON.parse(json)) };
      })
      .sort((a, b) => a.round - b.round || a.rank - b.rank);
  }

  /** The records of one round, by rank. */
  async roundRanks(pool: string, jobId: string, round: number, worldSize: number): Promise<Map<number, RankRecord>> {
    const fields = Array.from({ length: worldSize }, (_, rank) => `${round}:${rank}`);
    const raw = await this.redis.hmget(this.keys(pool).ranks(jobId), ...fields);
    const out = new Map<number, RankRecord>();
    raw.forEach((json, rank) => {
      if (json !== null) out.set(rank, rankRecordSchema.parse(JSON.parse(json)));
    });
    return out;
  }
}
