/**
 * Chaos row: duplicate submits with the same Idempotency-Key, concurrently.
 * A real producer, scheduler and worker on the row's prefix; for each of a
 * few keys, 50 identical `POST /v1/batches` fired at once (all keys
 * interleaved), plus a few with the same key and another body. Must hold:
 * one batch per key, every answer naming it; the other body refused (409);
 * each batch completes once, its output holding every custom_id exactly once.
 * Training jobs take no Idempotency-Key (producer/routes/training.ts), so
 * only batches are submitted twice here.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { silentLogger } from '../../../common/logger.ts';
import { startScheduler } from '../../../scheduler/scheduler.ts';
import { startFleet } from '../../helpers/fleet.ts';
import { until } from '../../helpers/until.ts';
import type { ChaosEnv, ChaosRow, RowResult } from '../types.ts';

const sizes = { short: { keys: 2, lines: 200 }, full: { keys: 5, lines: 2000 } } as const;
const DUPLICATES = 50;
const CONFLICTING = 5;

const yaml = `
scheduler: { renewEveryMs: 100, leaseTtlMs: 2000 }
batch: { chunkLines: 25, windowPerPool: 4, admitEveryMs: 50 }
pools: [{ name: default, backend: echo }]
`;

interface Answer {
  status: number;
  id?: string;
}
interface BatchView {
  id: string;
  status: string;
  output_file: string | null;
  error_file: string | null;
  request_counts: { total: number; completed: number; failed: number };
}

async function post(url: string, key: string, body: unknown): Promise<Answer> {
  const res = await fetch(`${url}/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { id?: string };
  return { status: res.status, ...(json.id !== undefined && { id: json.id }) };
}

/** custom_id → how many times it is in the batch's output file. */
async function outputCounts(uri: string | null): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  if (uri === null) return counts;
  for (const line of (await readFile(fileURLToPath(uri), 'utf8')).split('\n').filter(Boolean)) {
    const id = (JSON.parse(line) as { custom_id: string }).custom_id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

async function run(env: ChaosEnv): Promise<RowResult> {
  const { keys, lines } = sizes[env.mode];
  const fleet = await startFleet({ yaml, workers: 1, env: { REDIS_URL: env.redisUrl, INTERFLEET_PREFIX: env.prefix } });
  const scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  try {
    const input = join(env.workDir, 'idempotency-in.jsonl');
    const ids = Array.from({ length: lines }, (_, i) => `c${i}`);
    const row = (id: string) =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/infer',
        body: { input: { task: 'sentiment', text: `line ${id}` } },
      });
    await writeFile(input, `${ids.map(row).join('\n')}\n`);
    const body = { input_file: pathToFileURL(input).href, endpoint: '/v1/infer', completion_window: '24h' };
    const keyNames = Array.from({ length: keys }, (_, k) => `${env.prefix}-key-${k}`);

    // Every key's duplicates and conflicts fired at once, interleaved.
    const started = Date.now();
    const shots = keyNames.flatMap((key) => [
      ...Array.from({ length: DUPLICATES }, () => ({ key, conflicting: false })),
      ...Array.from({ length: CONFLICTING }, () => ({ key, conflicting: true })),
    ]);
    const answers = await Promise.all(
      shots.map(async (s) => ({
        ...s,
        ...(await post(fleet.producer.url, s.key, s.conflicting ? { ...body, metadata: { other: 'body' } } : body)),
      })),
    );
    const submitMs = Date.now() - started;
    const statusCounts = new Map<string, number>();
    for (const a of answers) {
      const k = `${a.conflicting ? 'other body' : 'same body'} ${a.status}`;
      statusCounts.set(k, (statusCounts.get(k) ?? 0) + 1);
    }
    // Per key, whichever body reached Redis first wins: all its answers name one batch, all the other body's are 409.
    const batchOf = new Map<string, Set<string>>();
    let wrongAnswers = 0;
    for (const key of keyNames) {
      const mine = answers.filter((a) => a.key === key);
      const winner = mine.find((a) => a.status === 200)?.conflicting;
      batchOf.set(key, new Set(mine.filter((a) => a.status === 200).map((a) => a.id ?? '?')));
      wrongAnswers += mine.filter((a) => (a.conflicting === winner ? a.status !== 200 : a.status !== 409)).length;
    }
    const distinct = [...batchOf.values()].reduce((n, s) => n + s.size, 0);

    // Batches that exist: the list holds one per key, no more.
    const list = (await (await fetch(`${fleet.producer.url}/v1/batches?limit=100`)).json()) as { data: BatchView[] };
    const batchIds = list.data.map((b) => b.id);

    // Each runs to the end, once.
    const finals = await Promise.all(
      batchIds.map((id) =>
        until(async () => {
          const b = (await (await fetch(`${fleet.producer.url}/v1/batches/${id}`)).json()) as BatchView;
          return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) ? b : undefined;
        }, 300_000),
      ),
    );
    const completeMs = Date.now() - started;
    let lost = 0;
    let duplicated = Math.max(0, batchIds.length - keys);
    const notCompleted = finals.filter((b) => b.status !== 'completed');
    for (const b of finals) {
      const counts = await outputCounts(b.output_file);
      lost += ids.filter((id) => !counts.has(id)).length;
      duplicated += [...counts.values()].reduce((n, c) => n + (c - 1), 0);
    }
    const holds =
      wrongAnswers === 0 &&
      distinct === keys &&
      batchIds.length === keys &&
      notCompleted.length === 0 &&
      lost === 0 &&
      duplicated === 0;
    return {
      load: `${keys} Idempotency-Keys × (${DUPLICATES} identical + ${CONFLICTING} other-body) concurrent POST /v1/batches, ${lines} lines each`,
      lost,
      duplicated,
      recoveryMs: null,
      holds,
      detail:
        `answers ${[...statusCounts].map(([k, n]) => `${k}×${n}`).join(', ')} in ${submitMs} ms; ` +
        `batch ids answered per key ${[...batchOf.values()].map((s) => s.size).join('/')}; batches stored ${batchIds.length}; ` +
        `final ${finals.map((b) => `${b.status} ${b.request_counts.completed}/${b.request_counts.total}`).join(', ')}; ` +
        `done in ${(completeMs / 1000).toFixed(1)} s; training jobs take no Idempotency-Key (not exercised)`,
    };
  } finally {
    await scheduler.close();
    await fleet.stop();
  }
}

export const row: ChaosRow = {
  id: 'idempotency',
  fault: 'duplicate submit with the same Idempotency-Key, concurrently',
  mustHold: 'one job, one result',
  run,
};
