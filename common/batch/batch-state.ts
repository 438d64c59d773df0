/**
 * A batch as Redis holds it (principle 3: a cursor plus counters, never its
 * lines): one hash per batch, two small bitmaps over its chunk indexes, and
 * the Lua scripts that move it. Producer (create, plan, cancel, finalise),
 * scheduler (admit, expire) and gpu-worker (settle a chunk) all write through
 * this module, so every transition is a compare-and-set in one place.
 *
 * Life of a batch (OpenAI's states):
 *   validating ──first plan piece──► in_progress ──planned, all chunks settled──► finalizing ──► completed
 *       │                    │  (expires_at passes: stop=expired) ──► finalizing ──► expired
 *       │                    └──cancel (stop=cancelled)──► cancelling ──► cancelled
 *       └──input missing / unreadable──► failed
 * `stop` records why admission ended early; finalisation then delivers the
 * finished part and marks every line that never ran.
 *
 * Planning overlaps the run: the batch goes in_progress with the plan's first
 * piece (`plan_chunks` counts the chunks published so far, and admission
 * reads up to it), and `planned`, `total` and `chunks` are set when planning
 * ends (publishPlan). A batch stopped (cancel, expiry) once a piece is
 * published keeps being planned to the end, since finalisation needs the
 * whole plan to account for every line; one stopped before is not planned.
 *
 * Counters are exact under at-least-once delivery: a chunk is settled once
 * (SETBIT on `settled` gates the HINCRBYs), whatever the number of runs. A
 * chunk that yielded (chunk preemption) also has a record of its finished
 * segments, appended once each and only while it is unsettled
 * (recordSegment; gpu-worker/bulk/chunk-runner.ts says why that is enough).
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { RedisClient } from '../redis.ts';
import { batchIndexKeys, batchKeys } from '../topology.ts';
import {
  batchEndpoints,
  chunkJobSchema,
  chunkSegmentSchema,
  partUris,
  type Chunk,
  type ChunkJob,
  type ChunkSegment,
} from '../contracts/batch.ts';

export const batchStatuses = [
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
] as const;
export type BatchStatus = (typeof batchStatuses)[number];
export const terminalStatuses: readonly BatchStatus[] = ['failed', 'completed', 'expired', 'cancelled'];
export const isTerminal = (s: BatchStatus): boolean => terminalStatuses.includes(s);

/** What the user asked for; fixed at creation. */
export const batchSpecSchema = z.object({
  id: z.string(),
  endpoint: z.enum(batchEndpoints),
  /** The pool that runs it. */
  model: z.string(),
  /** Object or prefix URI. */
  input: z.string(),
  /** Where output, error, manifest, plan and parts go (ends with `/`). */
  outputPrefix: z.string(),
  completionWindow: z.string(),
  createdAt: z.number().int(),
  expiresAt: z.number().int(),
  metadata: z.record(z.string(), z.string()).nullable(),
  priority: z.number().int(),
  tenant: z.string(),
  /** `api`, or `cron:<schedule>` for a scheduled launch. */
  source: z.string(),
});
export type BatchSpec = z.infer<typeof batchSpecSchema>;

/** What planning learnt about the input. */
export const planSummarySchema = z.object({
  planUri: z.string(),
  objects: z.number().int(),
  inputBytes: z.number().int(),
  sha256: z.string(),
  invalidLines: z.number().int(),
  duplicateLines: z.number().int(),
  plannedAt: z.number().int(),
  /** Admission reads the plan's pieces (batchFiles().planPieces) rather than planUri; absent: an older plan. */
  pieces: z.boolean().optional(),
});
export type PlanSummary = z.infer<typeof planSummarySchema>;

export const batchErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  line: z.number().int().nullable().default(null),
  param: z.string().nullable().default(null),
});
export type BatchError = z.infer<typeof batchErrorSchema>;

const timestampFields = [
  'in_progress_at',
  'finalizing_at',
  'completed_at',
  'failed_at',
  'expired_at',
  'cancelling_at',
  'cancelled_at',
] as const;
export type TimestampField = (typeof timestampFields)[number];

const counterFields = [
  /** Requests (non-blank lines); known once planned. */
  'total',
  /** Lines in the output file (so far: in settled chunks' output parts). */
  'completed',
  /** Lines in the error file (so far), plus lines that never ran once finalised. */
  'failed',
  /** Chunks in the plan; known once planned. */
  'chunks',
  /** Chunks published in plan pieces so far (readable by admission); = chunks once planned. */
  'plan_chunks',
  /** Next chunk index to admit. */
  'cursor',
  /** Byte offset of chunk `cursor` in the plan object. */
  'plan_byte',
  /** Chunk jobs put on the bulk queue (= cursor, kept for clarity). */
  'admitted',
  /** Chunks that ended: done, skipped (batch stopped) or failed for good. */
  'settled',
  /** Lines that never ran (cancel, expiry, a chunk that failed for good); set by finalisation. */
  'not_run',
] as const;
export type CounterField = (typeof counterFields)[number];

export interface BatchState {
  spec: BatchSpec;
  status: BatchStatus;
  /** Why admission stopped early, if it did. */
  stop: 'cancelled' | 'expired' | null;
  planned: boolean;
  plan: PlanSummary | null;
  errors: BatchError[];
  timestamps: Partial<Record<TimestampField, number>>;
  counters: Record<CounterField, number>;
  files: { output: string | null; error: string | null; manifest: string | null };
}

/** Builds a batch id that sorts by creation time (ms) as a string: `batch_<12 hex ms><8 hex random>`. */
export function newBatchId(now: number): string {
  return `batch_${now.toString(16).padStart(12, '0')}${randomBytes(4).toString('hex')}`;
}

export const batchIdSchema = z.string().regex(/^batch_[0-9a-f]{20}$/, 'not a batch id (batch_ followed by 20 hex)');

/** Decodes HGETALL's answer; undefined when the batch does not exist. */
export function decodeBatch(raw: Record<string, string>): BatchState | undefined {
  if (raw.spec === undefined) return undefined;
  const num = (field: string): number => (raw[field] === undefined ? 0 : Number(raw[field]));
  const timestamps: BatchState['timestamps'] = {};
  for (const f of timestampFields) if (raw[f] !== undefined) timestamps[f] = Number(raw[f]);
  const counters = Object.fromEntries(counterFields.map((f) => [f, num(f)])) as Record<CounterField, number>;
  const stop = raw.stop === 'cancelled' || raw.stop === 'expired' ? raw.stop : null;
  return {
    spec: batchSpecSchema.parse(JSON.parse(raw.spec)),
    status: z.enum(batchStatuses).parse(raw.status),
    stop,
    planned: raw.planned === '1',
    plan: raw.plan ? planSummarySchema.parse(JSON.parse(raw.plan)) : null,
    errors: raw.errors ? z.array(batchErrorSchema).parse(JSON.parse(raw.errors)) : [],
    timestamps,
    counters,
    files: { output: raw.output_file ?? null, error: raw.error_file ?? null, manifest: raw.manifest_file ?? null },
  };
}

/** Standard file names under a batch's output prefix. */
export function batchFiles(outputPrefix: string) {
  return {
    output: `${outputPrefix}output.jsonl`,
    error: `${outputPrefix}errors.jsonl`,
    manifest: `${outputPrefix}manifest.json`,
    plan: `${outputPrefix}plan.jsonl`,
    /** Chunk parts (partUris in contracts/batch.ts). */
    parts: `${outputPrefix}parts/`,
    /** The plan's pieces (planPieceUri in plan-file.ts): with the parts, deleted with them. */
    planPieces: `${outputPrefix}parts/`,
  };
}

/** The `bulk.<pool>` job of one planned chunk of a batch (validated): what admission adds. */
export function chunkJobFor(
  spec: Pick<BatchSpec, 'id' | 'endpoint' | 'model' | 'outputPrefix'>,
  chunk: Chunk,
): ChunkJob {
  return chunkJobSchema.parse({
    batchId: spec.id,
    endpoint: spec.endpoint,
    model: spec.model,
    chunk,
    ...partUris(batchFiles(spec.outputPrefix).parts, chunk.index),
  });
}

/*
 * KEYS[1] state. ARGV[1] allowed from-statuses (comma-separated), ARGV[2] the new status,
 * ARGV[3..] field/value pairs to set with it. Returns {1, old} or {0, current} (current '' if missing).
 */
const TRANSITION = `
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then
    redis.call('HSET', KEYS[1], 'status', ARGV[2])
    if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
    return {1, cur}
  end
end
return {0, cur}
`;

/*
 * KEYS[1] state, KEYS[2] fence. ARGV[1] epoch, ARGV[2] expected cursor, ARGV[3] new cursor, ARGV[4] plan byte.
 * Returns 1 advanced, 0 the cursor moved meanwhile, the batch stopped, or the new cursor is past the
 * chunks readable (all once planned, else those published), -1 stale epoch.
 */
const ADVANCE = `
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < seen then return -1 end
if epoch > seen then redis.call('SET', KEYS[2], epoch) end
local st = redis.call('HMGET', KEYS[1], 'status', 'stop', 'cursor', 'planned', 'chunks', 'plan_chunks')
if st[1] ~= 'in_progress' or (st[2] and st[2] ~= '') or tonumber(st[3] or '0') ~= tonumber(ARGV[2]) then return 0 end
local readable = tonumber((st[4] == '1' and st[5] or st[6]) or '0')
if tonumber(ARGV[3]) > readable then return 0 end
local n = tonumber(ARGV[3]) - tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'cursor', ARGV[3], 'plan_byte', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'admitted', n)
return 1
`;

/*
 * KEYS[1] state. ARGV[1] chunks published, ARGV[2] now (ms), ARGV[3] '1' when planning ended,
 * ARGV[4..] field/value pairs set with the end (planned, total, chunks, plan).
 * The first piece moves validating → in_progress; later ones raise plan_chunks while the batch is
 * in_progress, or stopped (cancelling, finalizing) after a piece was published. Returns {1, status}
 * published, {0, status} already planned (a re-run), {-1, status} the batch left validating before
 * any piece was published, ended or is gone: stop planning.
 */
const PUBLISH_PLAN = `
local st = redis.call('HMGET', KEYS[1], 'status', 'plan_chunks', 'planned')
if not st[1] then return {-1, ''} end
if st[3] == '1' then return {0, st[1]} end
local had = tonumber(st[2] or '0')
if st[1] == 'validating' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'in_progress_at', ARGV[2], 'cursor', 0, 'plan_byte', 0, 'admitted', 0)
elseif had == 0 or not (st[1] == 'in_progress' or st[1] == 'cancelling' or st[1] == 'finalizing') then
  return {-1, st[1]}
end
if tonumber(ARGV[1]) > had then redis.call('HSET', KEYS[1], 'plan_chunks', ARGV[1]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
return {1, st[1]}
`;

/*
 * KEYS[1] state. ARGV[1] the spec (JSON).
 * Creates the batch, validating, in one step: a reader between a spec and its status (two
 * concurrent submits with one Idempotency-Key) read a state it could not decode, a 500.
 * Returns 1 when created, 0 when the batch already existed.
 */
const CREATE = `
if redis.call('HSETNX', KEYS[1], 'spec', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'validating', 'stop', '', 'planned', '0')
return 1
`;

/*
 * KEYS[1] state. ARGV[1..] field/value pairs set with `failed`.
 * Fails a batch whose planning failed: from validating, or from a state its published pieces led
 * to (in_progress, or stopped meanwhile) while not yet planned. Returns {1, old} or {0, current}.
 */
const FAIL_PLANNING = `
local st = redis.call('HMGET', KEYS[1], 'status', 'plan_chunks', 'planned')
if not st[1] then return {0, ''} end
local planning = st[3] ~= '1' and tonumber(st[2] or '0') > 0 and
  (st[1] == 'in_progress' or st[1] == 'cancelling' or st[1] == 'finalizing')
if st[1] ~= 'validating' and not planning then return {0, st[1]} end
redis.call('HSET', KEYS[1], 'status', 'failed', unpack(ARGV))
return {1, st[1]}
`;

/**
 * The opening of every chunk script: return -1 when the batch is gone or final (from
 * terminalStatuses), so a late or duplicate run never moves a delivered batch's counters.
 */
const REFUSE_FINAL = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status or ${terminalStatuses.map((t) => `status == '${t}'`).join(' or ')} then return -1 end
`;

/*
 * KEYS[1] state, KEYS[2] settled bits, KEYS[3] done bits, KEYS[4] chunk errors.
 * ARGV[1] chunk index, ARGV[2] outcome (done|skipped|failed), ARGV[3] completed, ARGV[4] failed, ARGV[5] reason.
 * Returns 1 when this call settled the chunk, 0 when it already was, -1 when the batch is gone or
 * final (a late duplicate run must not move a delivered batch's counters).
 */
const SETTLE = `
${REFUSE_FINAL}if redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], 'settled', 1)
if ARGV[2] == 'done' then
  redis.call('SETBIT', KEYS[3], ARGV[1], 1)
  redis.call('HINCRBY', KEYS[1], 'completed', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
elseif ARGV[2] == 'failed' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
end
return 1
`;

/*
 * KEYS[1] state, KEYS[2] settled bits, KEYS[3] segments.
 * ARGV[1] chunk index, ARGV[2] the chunk's planned start, ARGV[3] the segment as JSON,
 * ARGV[4] its start, ARGV[5] its end, ARGV[6] completed, ARGV[7] failed.
 * Appends the segment when it starts where the chunk's recorded progress ends, and counts its
 * lines then (they are in the output and error files from now on, whatever happens to the rest).
 * Returns 1 recorded, 0 already recorded (the same range), -1 batch gone or final,
 * -2 chunk already settled, -3 conflict (the recorded progress ends elsewhere).
 */
const RECORD_SEGMENT = `
${REFUSE_FINAL}if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return -2 end
local rec = redis.call('HGET', KEYS[3], ARGV[1])
local at = tonumber(ARGV[2])
if rec then
  for _, seg in ipairs(cjson.decode(rec)) do
    if seg['start'] == tonumber(ARGV[4]) and seg['end'] == tonumber(ARGV[5]) then return 0 end
    at = seg['end']
  end
end
if at ~= tonumber(ARGV[4]) then return -3 end
if rec then
  redis.call('HSET', KEYS[3], ARGV[1], string.sub(rec, 1, -2) .. ',' .. ARGV[3] .. ']')
else
  redis.call('HSET', KEYS[3], ARGV[1], '[' .. ARGV[3] .. ']')
end
redis.call('HINCRBY', KEYS[1], 'completed', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[7])
return 1
`;

/*
 * KEYS[1] state, KEYS[2] settled bits, KEYS[3] done bits, KEYS[4] segments.
 * ARGV[1] chunk index, ARGV[2] the chunk's planned start, ARGV[3] where the last part starts,
 * ARGV[4] completed, ARGV[5] failed (the last part's own lines).
 * Settles the chunk done when its last part starts where the recorded segments end (the
 * planned start when there are none). Returns 1, 0 already settled, -1 gone or final, -3 conflict.
 */
const SETTLE_LAST_PART = `
${REFUSE_FINAL}if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 0 end
local rec = redis.call('HGET', KEYS[4], ARGV[1])
local at = tonumber(ARGV[2])
if rec then
  local segs = cjson.decode(rec)
  at = segs[#segs]['end']
end
if at ~= tonumber(ARGV[3]) then return -3 end
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], 'settled', 1)
redis.call('SETBIT', KEYS[3], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], 'completed', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[5])
return 1
`;

export type RecordSegmentResult = 'recorded' | 'already' | 'gone' | 'settled' | 'conflict';
export type SettleLastPartResult = 'settled' | 'already' | 'gone' | 'conflict';

const recordResults: Record<string, RecordSegmentResult> = {
  '1': 'recorded',
  '0': 'already',
  '-1': 'gone',
  '-2': 'settled',
  '-3': 'conflict',
};
const settleLastResults: Record<string, SettleLastPartResult> = {
  '1': 'settled',
  '0': 'already',
  '-1': 'gone',
  '-3': 'conflict',
};

const segmentsSchema = z.array(chunkSegmentSchema);

/** Bit `index` of a Redis bitmap (SETBIT numbers bits from the most significant of byte 0). */
const bitSet = (bits: Buffer, index: number): boolean =>
  index >> 3 < bits.length && (bits[index >> 3]! & (0x80 >> (index & 7))) !== 0;

export type ChunkOutcome =
  | { outcome: 'done'; completed: number; failed: number }
  | { outcome: 'skipped' }
  | { outcome: 'failed'; reason: string };

/** Batch state I/O over one Redis client (single node or Cluster: each call touches one slot). */
export class BatchStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  keys(batchId: string) {
    return batchKeys(this.prefix, batchId);
  }

  /** Creates a batch in `validating` and indexes it. */
  async create(spec: BatchSpec): Promise<void> {
    const k = this.keys(spec.id);
    const idx = batchIndexKeys(this.prefix);
    const created = Number(await this.redis.eval(CREATE, 1, k.state, JSON.stringify(spec)));
    if (created === 0) throw new Error(`batch ${spec.id} already exists`);
    // Indexes live in another slot: a second round trip (a crash here leaves an unlisted batch with no job).
    await this.redis.pipeline().zadd(idx.all, 0, spec.id).zadd(idx.open, 0, spec.id).exec();
  }

  async get(batchId: string): Promise<BatchState | undefined> {
    return decodeBatch(await this.redis.hgetall(this.keys(batchId).state));
  }

  /**
   * Several batches in one round trip. Missing ones are dropped; one whose
   * state does not decode throws, unless `onUndecodable` takes it (then it is
   * left out too), so one bad hash need not stall a caller that loops over all.
   */
  async getMany(
    batchIds: readonly string[],
    onUndecodable?: (batchId: string, err: unknown) => void,
  ): Promise<BatchState[]> {
    if (batchIds.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of batchIds) pipe.hgetall(this.keys(id).state);
    const results = (await pipe.exec()) ?? [];
    const out: BatchState[] = [];
    results.forEach(([err, raw], i) => {
      if (err) throw err;
      let state: BatchState | undefined;
      try {
        state = decodeBatch(raw as Record<string, string>);
      } catch (decodeErr) {
        if (!onUndecodable) throw decodeErr;
        onUndecodable(batchIds[i]!, decodeErr);
      }
      if (state) out.push(state);
    });
    return out;
  }

  /** Newest first; `after` is the last id of the previous page (OpenAI's cursor). */
  async listIds(limit: number, after?: string): Promise<{ ids: string[]; hasMore: boolean }> {
    const max = after === undefined ? '+' : `(${after}`;
    const ids = await this.redis.zrevrangebylex(batchIndexKeys(this.prefix).all, max, '-', 'LIMIT', 0, limit + 1);
    return { ids: ids.slice(0, limit), hasMore: ids.length > limit };
  }

  /** Batches not yet in a final state (the scheduler's worklist), oldest first. */
  async openIds(): Promise<string[]> {
    return this.redis.zrange(batchIndexKeys(this.prefix).open, '0', '-1');
  }

  /** Drops a batch from the open index (once final). */
  async close(batchId: string): Promise<void> {
    await this.redis.zrem(batchIndexKeys(this.prefix).open, batchId);
  }

  /**
   * Compare-and-set of the status. `fields` are set with it (timestamps, counters, JSON).
   * Returns whether it moved, and the status it found.
   */
  async transition(
    batchId: string,
    from: readonly BatchStatus[],
    to: BatchStatus,
    fields: Record<string, string | number> = {},
  ): Promise<{ moved: boolean; status: BatchStatus | undefined }> {
    const args = Object.entries(fields).flatMap(([f, v]) => [f, String(v)]);
    const [moved, status] = (await this.redis.eval(
      TRANSITION,
      1,
      this.keys(batchId).state,
      from.join(','),
      to,
      ...args,
    )) as [number, string];
    return { moved: moved === 1, status: status === '' ? undefined : (status as BatchStatus) };
  }

  /**
   * Publishes `published` chunks of a plan being cut (PUBLISH_PLAN); with `end`, planning is over
   * and its fields (planned, total, chunks, plan) are set too. 'left' means stop planning.
   */
  async publishPlan(
    batchId: string,
    published: number,
    now: number,
    end?: Record<string, string | number>,
  ): Promise<{ result: 'published' | 'already' | 'left'; status: BatchStatus | undefined }> {
    const args = end === undefined ? [] : Object.entries(end).flatMap(([f, v]) => [f, String(v)]);
    const [r, status] = (await this.redis.eval(
      PUBLISH_PLAN,
      1,
      this.keys(batchId).state,
      published,
      now,
      end === undefined ? '0' : '1',
      ...args,
    )) as [number, string];
    const result = r === 1 ? 'published' : r === 0 ? 'already' : 'left';
    return { result, status: status === '' ? undefined : (status as BatchStatus) };
  }

  /**
   * Ends a batch `failed` for its planning (FAIL_PLANNING), with `fields` (failed_at, errors), and
   * drops it from the open index once it moved (the index keys live outside the script's slot).
   */
  async failPlanning(
    batchId: string,
    fields: Record<string, string | number>,
  ): Promise<{ moved: boolean; status: BatchStatus | undefined }> {
    const args = Object.entries(fields).flatMap(([f, v]) => [f, String(v)]);
    const [moved, status] = (await this.redis.eval(FAIL_PLANNING, 1, this.keys(batchId).state, ...args)) as [
      number,
      string,
    ];
    if (moved === 1) await this.close(batchId);
    return { moved: moved === 1, status: status === '' ? undefined : (status as BatchStatus) };
  }

  /** Advances the admission cursor as scheduler leader of `epoch`; 'stale' means a newer leader exists. */
  async advanceCursor(
    batchId: string,
    epoch: number,
    from: number,
    to: number,
    planByte: number,
  ): Promise<'advanced' | 'conflict' | 'stale'> {
    const k = this.keys(batchId);
    const r = Number(await this.redis.eval(ADVANCE, 2, k.state, k.fence, epoch, from, to, planByte));
    return r === 1 ? 'advanced' : r === 0 ? 'conflict' : 'stale';
  }

  /** Records how a chunk ended, once; later calls for the same chunk change nothing. */
  async settleChunk(batchId: string, index: number, outcome: ChunkOutcome): Promise<'settled' | 'already' | 'gone'> {
    const k = this.keys(batchId);
    const completed = outcome.outcome === 'done' ? outcome.completed : 0;
    const failed = outcome.outcome === 'done' ? outcome.failed : 0;
    const reason = outcome.outcome === 'failed' ? outcome.reason : '';
    const r = Number(
      await this.redis.eval(
        SETTLE,
        4,
        k.state,
        k.settled,
        k.done,
        k.chunkErrors,
        index,
        outcome.outcome,
        completed,
        failed,
        reason,
      ),
    );
    return r === 1 ? 'settled' : r === 0 ? 'already' : 'gone';
  }

  /**
   * Records a finished segment of a chunk that yielded (compare-and-append:
   * it must start where the chunk's recorded progress ends, `plannedStart`
   * when nothing is recorded) and counts its lines. The record is what
   * finalisation merges, and where a later run of the chunk resumes.
   */
  async recordSegment(
    batchId: string,
    index: number,
    plannedStart: number,
    segment: ChunkSegment,
  ): Promise<RecordSegmentResult> {
    const k = this.keys(batchId);
    const seg = chunkSegmentSchema.parse(segment);
    const r = await this.redis.eval(
      RECORD_SEGMENT,
      3,
      k.state,
      k.settled,
      k.segments,
      index,
      plannedStart,
      JSON.stringify(seg),
      seg.start,
      seg.end,
      seg.completed,
      seg.failed,
    );
    return recordResults[String(r)]!;
  }

  /**
   * Settles a chunk done from its last part, which starts at `from` and holds
   * `completed` + `failed` lines: only when `from` is where the recorded
   * segments end (`plannedStart` without any), else 'conflict' and nothing
   * changes. For a chunk that never yielded it is settleChunk's `done`.
   */
  async settleLastPart(
    batchId: string,
    index: number,
    plannedStart: number,
    from: number,
    counts: { completed: number; failed: number },
  ): Promise<SettleLastPartResult> {
    const k = this.keys(batchId);
    const r = await this.redis.eval(
      SETTLE_LAST_PART,
      4,
      k.state,
      k.settled,
      k.done,
      k.segments,
      index,
      plannedStart,
      from,
      counts.completed,
      counts.failed,
    );
    return settleLastResults[String(r)]!;
  }

  /** A chunk's recorded segments, in order (empty when it never yielded). */
  async chunkSegments(batchId: string, index: number): Promise<ChunkSegment[]> {
    const raw = await this.redis.hget(this.keys(batchId).segments, String(index));
    return raw === null ? [] : segmentsSchema.parse(JSON.parse(raw));
  }

  /** Every chunk's recorded segments, by index (finalisation; one HGETALL). */
  async allChunkSegments(batchId: string): Promise<Map<number, ChunkSegment[]>> {
    const raw = await this.redis.hgetall(this.keys(batchId).segments);
    return new Map(Object.entries(raw).map(([i, json]) => [Number(i), segmentsSchema.parse(JSON.parse(json))]));
  }

  /** Chunk indexes whose parts were written (one GET of a bitmap: 1.25 KB per 10,000 chunks). */
  async doneChunks(batchId: string): Promise<(index: number) => boolean> {
    const bits = (await this.redis.getBuffer(this.keys(batchId).done)) ?? Buffer.alloc(0);
    return (index) => bitSet(bits, index);
  }

  /** Chunk indexes below `below` not yet settled, ascending (one GET of the settled bitmap). */
  async unsettledChunks(batchId: string, below: number): Promise<number[]> {
    const bits = (await this.redis.getBuffer(this.keys(batchId).settled)) ?? Buffer.alloc(0);
    const out: number[] = [];
    for (let i = 0; i < below; i++) if (!bitSet(bits, i)) out.push(i);
    return out;
  }

  /** Why chunks failed for good, by index. */
  async chunkErrors(batchId: string): Promise<Map<number, string>> {
    const raw = await this.redis.hgetall(this.keys(batchId).chunkErrors);
    return new Map(Object.entries(raw).map(([i, reason]) => [Number(i), reason]));
  }

  /** The few fields a worker checks before running a chunk. */
  async runnable(batchId: string): Promise<boolean> {
    // Cancel and expiry move the status off in_progress before anything else.
    return (await this.redis.hget(this.keys(batchId).state, 'status')) === 'in_progress';
  }

  /** Sets plain fields (no status change); for counters that only finalisation writes. */
  async setFields(batchId: string, fields: Record<string, string | number>): Promise<void> {
    await this.redis.hset(this.keys(batchId).state, fields);
  }
}
