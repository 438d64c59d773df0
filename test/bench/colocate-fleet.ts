/**
 * Setup (d), bench side: the real fleet on a private Redis. The producer and
 * the scheduler each in a child process (batch-role.child.ts), `workers`
 * gpu-worker processes with `backend: sim`; real-time requests go over HTTP
 * (POST /v1/infer, TTFT = the reply's timings.queueMs + timings.firstTokenMs),
 * the bulk backlog is one batch (POST /v1/batches over a file:// JSONL input)
 * cut into chunks of `chunkRecords` lines.
 *
 * The product's own clocks (heartbeat, latency window, balance period, hold
 * after a decrease, admission period) are divided by F like the model's, with
 * the config's floors, so the compressed run plays the product's defaults at
 * model speed. The pool's objective is the run's objective in wall ms.
 */
import { createWriteStream, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { budgetExplanationSchema } from '../../common/contracts/explain.ts';
import { explainKey, queueName } from '../../common/topology.ts';
import { Child } from './children.ts';
import { procCpuSeconds, sampleCpu } from './cpu.ts';
import { BulkMeter } from './colocate-bulk-meter.ts';
import type { ColocateParams, RunningSetup } from './colocate-setup.ts';
import { chatInput } from './colocate-workload.ts';
import { fmtMs, median, percentile } from './stats.ts';
import { testFileRootsEnv } from '../helpers/file-roots.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const PREFIX = 'colo';
const POOL = 'colo';

/** The product's periods at model speed: default / F, not below the config's floor. */
export function scaledClocks(factor: number) {
  const s = (defaultMs: number, floorMs: number) => Math.max(floorMs, Math.round(defaultMs / factor));
  return {
    heartbeatMs: s(2000, 50),
    heartbeatTtlMs: s(6000, 100),
    latencyWindowMs: s(10_000, 100),
    balanceEveryMs: s(1000, 50),
    holdAfterDecreaseMs: s(3000, 0),
    admitEveryMs: s(500, 10),
  };
}

function fleetConfig(p: ColocateParams, objectiveWallMs: number, factor: number): unknown {
  const c = scaledClocks(factor);
  return {
    log: { pretty: false },
    worker: { heartbeatMs: c.heartbeatMs, heartbeatTtlMs: c.heartbeatTtlMs, latencyWindowMs: c.latencyWindowMs },
    scheduler: { balanceEveryMs: c.balanceEveryMs, balance: { holdAfterDecreaseMs: c.holdAfterDecreaseMs } },
    batch: { chunkLines: p.chunkRecords, admitEveryMs: c.admitEveryMs },
    pools: [
      {
        name: POOL,
        backend: 'sim',
        maxWaiting: 100_000,
        firstTokenObjectiveMs: Math.max(1, Math.round(objectiveWallMs)),
        sim: p.sim,
        lanes: {
          realtime: { concurrency: p.rtSlots },
          bulk: { concurrency: p.bulkSlots, batchSize: p.batchSize },
        },
      },
    ],
  };
}

async function writeBacklog(file: string, p: ColocateParams): Promise<void> {
  const out = createWriteStream(file);
  const body = JSON.stringify({ input: chatInput(p.bulkPromptTokens, p.bulkOutputTokens) });
  const lines = p.backlogChunks * p.chunkRecords;
  let buf = '';
  for (let i = 0; i < lines; i++) {
    buf += `{"custom_id":"b${i}","method":"POST","url":"/v1/infer","body":${body}}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

const pct = (xs: number[], p: number): number => percentile(Float64Array.from(xs).sort(), p);

interface BudgetSample {
  at: number;
  budget: number;
  reason: string;
  preempt: number;
  quantileMs: number | undefined;
  samples: number;
  realtimeWaiting: number;
}

export async function startFleet(
  p: ColocateParams,
  redisUrl: string,
  tmp: string,
  objectiveWallMs: number,
  factor: number,
): Promise<RunningSetup> {
  const configPath = path.join(tmp, 'fleet.yaml');
  writeFileSync(configPath, stringify(fleetConfig(p, objectiveWallMs, factor)));
  const inputFile = path.join(tmp, 'backlog.jsonl');
  await writeBacklog(inputFile, p);
  const env = {
    REDIS_URL: redisUrl,
    INTERFLEET_PREFIX: PREFIX,
    INTERFLEET_CONFIG: configPath,
    ...testFileRootsEnv,
    WORKER_POOL: POOL,
    LOG_LEVEL: 'warn',
    WORKER_METRICS_PORT: '-1',
    SCHEDULER_METRICS_PORT: '-1',
    WORKER_SHUTDOWN_GRACE_MS: '1000',
  };
  const children: Child[] = [];
  const spawn = (name: string, file: string, extra: Record<string, string> = {}): Child => {
    const c = Child.start(name, file, { ...env, ...extra }, 60_000);
    children.push(c);
    return c;
  };
  const producer = spawn('producer', path.join(here, 'batch-role.child.ts'), { BENCH_ROLE: 'producer' });
  const scheduler = spawn('scheduler', path.join(here, 'batch-role.child.ts'), { BENCH_ROLE: 'scheduler' });
  const workers = Array.from({ length: p.workers }, (_, i) =>
    spawn(`worker-${i}`, path.join(root, 'gpu-worker/main.ts')),
  );
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: null });
  let meter: BulkMeter | undefined;
  const samples: BudgetSample[] = [];
  let batchId: string | undefined;
  let url = '';
  // Where each real-time request's TTFT went (wall ms): waiting in rt.<pool>, then in the engine.
  const queueMs: number[] = [];
  const engineMs: number[] = [];
  // CPU of each child from the bulk start to the report: is a process the bottleneck?
  let cpuFrom: { at: number; sample: Awaited<ReturnType<typeof sampleCpu>> } | undefined;
  const probes = children.map((c) => ({ name: c.name, read: () => procCpuSeconds(c.proc.pid) }));
  try {
    url = String((await producer.ready).url);
    await scheduler.ready;
    await Promise.all(workers.map((w) => w.ready));
    meter = await BulkMeter.start(
      redisUrl,
      queueName('bulk', POOL),
      PREFIX,
      (_jobId, rv) => {
        const r = rv as { status?: string; completed?: number } | null;
        return r?.status === 'done' || r?.status === 'already_done' ? (r.completed ?? 0) : undefined;
      },
      p.bulkOutputTokens,
    );
  } catch (err) {
    await Promise.all(children.map((c) => c.stop(2000)));
    admin.disconnect();
    throw err;
  }
  const key = explainKey(PREFIX, 'budget', POOL);
  let lastAt = 0;
  const sampler = setInterval(() => {
    void admin.get(key).then((raw) => {
      if (raw === null) return;
      const e = budgetExplanationSchema.safeParse(JSON.parse(raw));
      if (!e.success || e.data.at === lastAt) return;
      lastAt = e.data.at;
      const d = e.data.decision;
      samples.push({
        at: performance.now(),
        budget: d.budget,
        reason: d.reason,
        preempt: d.preempt,
        quantileMs: d.observed.quantileMs,
        samples: d.observed.samples,
        realtimeWaiting: d.observed.realtimeWaiting,
      });
    });
  }, scaledClocks(factor).balanceEveryMs);

  return {
    meter,
    async send(req) {
      const res = await fetch(`${url}/v1/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: POOL,
          input: chatInput(req.promptTokens, req.outputTokens),
          timeout_ms: 600_000,
        }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`POST /v1/infer: HTTP ${res.status} ${text.slice(0, 300)}`);
      const { timings } = JSON.parse(text) as { timings: { queueMs: number; firstTokenMs: number } };
      queueMs.push(timings.queueMs);
      engineMs.push(timings.firstTokenMs);
      return timings.queueMs + timings.firstTokenMs;
    },
    async startBulk() {
      cpuFrom = { at: performance.now(), sample: await sampleCpu(probes) };
      const body = JSON.stringify({ input_file: pathToFileURL(inputFile).href, endpoint: '/v1/infer', model: POOL });
      // 503 says "try again shortly" (seen once on the loaded 2-core machine): retry as a client would.
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(`${url}/v1/batches`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        const text = await res.text();
        if (res.ok) {
          batchId = (JSON.parse(text) as { id: string }).id;
          return;
        }
        if (res.status !== 503 || attempt >= 5) throw new Error(`POST /v1/batches: HTTP ${res.status} ${text}`);
        console.log(`    POST /v1/batches: HTTP 503 (attempt ${attempt}), retrying in 1 s: ${text.slice(0, 200)}`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    },
    async notes() {
      const spent: Record<string, number> = (await cpuFrom?.sample.since()) ?? {};
      const wallS = cpuFrom === undefined ? Number.NaN : (performance.now() - cpuFrom.at) / 1000;
      const cpuLine = `CPU busy since the bulk start (${wallS.toFixed(0)} s wall): ${children
        .map((c) => `${c.name} ${(((spent[c.name] ?? Number.NaN) / wallS) * 100).toFixed(0)} %`)
        .join(', ')}`;
      // Decisions while real-time load was on (the warm-up's are all no_realtime_load).
      const during = samples.filter((s) => s.reason !== 'no_realtime_load');
      if (during.length === 0) return ['scheduler: no budget decision was read (is the budget loop running?)', cpuLine];
      const reasons = new Map<string, number>();
      for (const s of during) reasons.set(s.reason, (reasons.get(s.reason) ?? 0) + 1);
      const budgets = during.map((s) => s.budget);
      const preempted = during.reduce((n, s) => n + s.preempt, 0);
      return [
        `scheduler: ${during.length} budget decisions read (of ${p.workers * p.bulkSlots} bulk slots): budget min ${Math.min(...budgets)}, median ${median(budgets)}, max ${Math.max(...budgets)}; chunks asked to yield ${preempted}`,
        `scheduler reasons: ${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')}`,
        `scheduler saw (wall ms ×F = model): first-token samples per window median ${median(during.map((s) => s.samples))}, p99 median ${fmtMs(median(during.flatMap((s) => (s.quantileMs === undefined ? [] : [s.quantileMs * factor]))))} ms model, undefined in ${during.filter((s) => s.quantileMs === undefined).length} decisions; rt queue waiting > 0 in ${during.filter((s) => s.realtimeWaiting > 0).length}`,
        `real-time TTFT split (model ms): queue wait p50 ${fmtMs(pct(queueMs, 50) * factor)} p99 ${fmtMs(pct(queueMs, 99) * factor)}; start to first token p50 ${fmtMs(pct(engineMs, 50) * factor)} p99 ${fmtMs(pct(engineMs, 99) * factor)}`,
        cpuLine,
        `batch ${batchId ?? '(not submitted)'}`,
      ];
    },
    async close() {
      clearInterval(sampler);
      await Promise.all(children.map((c) => c.stop(3000)));
      await meter.close();
      admin.disconnect();
    },
  };
}
