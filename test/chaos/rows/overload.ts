/**
 * Chaos row: 10× the sustainable real-time rate for 60 s (15 s short) while
 * a batch runs. A real producer, worker (the sim backend: a modelled GPU
 * server, so capacity comes from model time, not from this machine's CPU)
 * and scheduler on the row's prefix. First a closed-loop burst measures the
 * completions/s the fleet sustains; then the official `openai` client offers
 * ten times that, open loop. Must hold: only 2xx / 429 / 503, each 429/503
 * with Retry-After; every 2xx a completion; the batch finishes with every
 * line; Redis memory bounded (INFO used_memory sampled) and no eviction.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { silentLogger } from '../../../common/logger.ts';
import { startScheduler } from '../../../scheduler/scheduler.ts';
import { startFleet } from '../../helpers/fleet.ts';
import { until } from '../../helpers/until.ts';
import type { ChaosEnv, ChaosRow, RowResult } from '../types.ts';

const durationS = { short: 15, full: 60 } as const;
const RT_SLOTS = 8;
const BATCH_LINES = 400;
/** Redis may grow this much over the run (the queue is capped by maxWaiting; results expire). */
const MEMORY_BOUND_BYTES = 64 * 1024 * 1024;

const yaml = `
scheduler: { renewEveryMs: 100, leaseTtlMs: 2000 }
producer: { depthRefreshMs: 50 }
batch: { chunkLines: 50, windowPerPool: 2, admitEveryMs: 100 }
pools:
  - name: default
    backend: sim
    maxWaiting: ${RT_SLOTS * 4}
    lanes: { realtime: { concurrency: ${RT_SLOTS} }, bulk: { concurrency: 1 } }
`;

const ask = (client: OpenAI) =>
  client.chat.completions.create({
    model: 'default',
    messages: [{ role: 'user', content: 'the quick brown fox jumps over the lazy dog' }],
    max_tokens: 16,
  });

/** Completions per second with `concurrency` callers back to back for `seconds`. */
async function sustainable(client: OpenAI, concurrency: number, seconds: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await ask(client).then(
          () => done++,
          () => new Promise((r) => setTimeout(r, 50)),
        );
      }
    }),
  );
  return done / seconds;
}

interface Tally {
  sent: number;
  completions: number;
  emptyOk: number;
  byStatus: Map<string, number>;
  withoutRetryAfter: number;
  /** The first 503's message: why the producer was unavailable. */
  first503?: string;
}

/** Offers `rate` requests/s, open loop, for `seconds`; resolves once every answer is in. */
async function drive(client: OpenAI, rate: number, seconds: number): Promise<Tally> {
  const t: Tally = { sent: 0, completions: 0, emptyOk: 0, byStatus: new Map(), withoutRetryAfter: 0 };
  const count = (k: string) => t.byStatus.set(k, (t.byStatus.get(k) ?? 0) + 1);
  const inFlight: Promise<void>[] = [];
  const start = Date.now();
  while (Date.now() - start < seconds * 1000) {
    const due = Math.floor(((Date.now() - start) / 1000) * rate);
    for (; t.sent < due; t.sent++) {
      inFlight.push(
        ask(client).then(
          (c) => {
            count('200');
            if (typeof c.choices[0]?.message.content === 'string' && c.choices[0].finish_reason) t.completions++;
            else t.emptyOk++;
          },
          (err: unknown) => {
            if (!(err instanceof OpenAI.APIError) || err.status === undefined)
              return void count(`error ${String(err)}`.slice(0, 60));
            count(String(err.status));
            if (err.status === 503) t.first503 ??= err.message.slice(0, 120);
            if ((err.status === 429 || err.status === 503) && !err.headers?.get('retry-after')) t.withoutRetryAfter++;
          },
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.all(inFlight);
  return t;
}

async function info(redis: Redis, section: string, field: string): Promise<number> {
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(await redis.info(section));
  return m ? Number(m[1]) : NaN;
}

async function run(env: ChaosEnv): Promise<RowResult> {
  const seconds = durationS[env.mode];
  const fleet = await startFleet({ yaml, workers: 1, env: { REDIS_URL: env.redisUrl, INTERFLEET_PREFIX: env.prefix } });
  const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  const redis = new Redis(env.redisUrl);
  const client = new OpenAI({ baseURL: `${fleet.producer.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  try {
    const rate = await sustainable(client, RT_SLOTS * 2, env.mode === 'short' ? 4 : 8);
    const target = rate * 10;
    env.log(`sustainable ${rate.toFixed(1)} completions/s; offering ${target.toFixed(0)} req/s for ${seconds} s`);

    // A batch to run through the overload, on the same sim engine.
    const input = join(env.workDir, 'overload-batch.jsonl');
    const ids = Array.from({ length: BATCH_LINES }, (_, i) => `b${i}`);
    const line = (id: string) =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/infer',
        body: { input: { task: 'sentiment', text: `line ${id}` } },
      });
    await writeFile(input, `${ids.map(line).join('\n')}\n`);
    const batch = await client.batches.create({
      input_file_id: pathToFileURL(input).href,
      endpoint: '/v1/infer',
      completion_window: '24h',
    } as unknown as OpenAI.Batches.BatchCreateParams);

    const memoryBefore = await info(redis, 'memory', 'used_memory');
    const evictedBefore = await info(redis, 'stats', 'evicted_keys');
    let peak = memoryBefore;
    const sampler = setInterval(() => {
      void info(redis, 'memory', 'used_memory').then(
        (m) => (peak = Math.max(peak, m)),
        () => undefined,
      );
    }, 250);
    const started = Date.now();
    const tally = await drive(client, target, seconds).finally(() => clearInterval(sampler));
    const offered = tally.sent / seconds;
    const final = await until(async () => {
      const b = await client.batches.retrieve(batch.id);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) ? b : undefined;
    }, 300_000);
    const batchDoneS = (Date.now() - started) / 1000;
    const memoryEnd = await info(redis, 'memory', 'used_memory');
    const evicted = (await info(redis, 'stats', 'evicted_keys')) - evictedBefore;
    const outputFile = (final as unknown as { output_file: string | null }).output_file;
    const answered = new Set(
      outputFile === null
        ? []
        : (await readFile(fileURLToPath(outputFile), 'utf8'))
            .split('\n')
            .filter(Boolean)
            .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id),
    );
    const batchLost = ids.filter((id) => !answered.has(id)).length;
    const unexpected = [...tally.byStatus].filter(([k]) => !['200', '429', '503'].includes(k));
    const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
    const holds =
      unexpected.length === 0 &&
      tally.emptyOk === 0 &&
      tally.withoutRetryAfter === 0 &&
      final.status === 'completed' &&
      batchLost === 0 &&
      evicted === 0 &&
      peak - memoryBefore < MEMORY_BOUND_BYTES &&
      offered >= target * 0.8;
    const ok = tally.byStatus.get('200') ?? 0;
    const counts = [...tally.byStatus].map(([k, n]) => `${k}×${n}`).join(' ');
    return {
      load: `sustainable ${rate.toFixed(1)} rt/s measured; offered ${offered.toFixed(0)} rt/s (10×) for ${seconds} s; 1 batch of ${BATCH_LINES} lines`,
      lost: tally.emptyOk + batchLost,
      duplicated: 0,
      recoveryMs: null,
      holds,
      detail:
        `${counts}; 2xx with a completion ${tally.completions}/${ok} (goodput ${(ok / seconds).toFixed(1)}/s, ${((ok / seconds / rate) * 100).toFixed(0)}% of sustainable); ` +
        (tally.first503 ? `first 503: ${tally.first503}; ` : '') +
        `429/503 without Retry-After ${tally.withoutRetryAfter}; batch ${final.status} ${answered.size}/${BATCH_LINES} at ${batchDoneS.toFixed(1)} s; ` +
        `Redis used_memory ${mib(memoryBefore)} MiB before, peak ${mib(peak)}, end ${mib(memoryEnd)} (bound +${mib(MEMORY_BOUND_BYTES)}; the Redis is shared); evicted_keys +${evicted}`,
    };
  } finally {
    redis.disconnect();
    await scheduler.close();
    await fleet.stop();
  }
}

export const row: ChaosRow = {
  id: 'overload',
  fault: '10× the sustainable request rate for 60 s',
  mustHold: 'only 2xx / 429 / 503; 0 lost; Redis memory bounded; no eviction',
  run,
};
