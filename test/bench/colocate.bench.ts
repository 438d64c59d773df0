/**
 * `npm run bench:colocate`: real-time and bulk LLM traffic on the same
 * modelled GPUs, four ways, in one run (issue 4, "Proof").
 *
 * Load. Real-time: a slice of the Azure LLM inference trace 2023
 * (conversation), replayed open-loop as chats (prompt = ContextTokens,
 * max_tokens = GeneratedTokens). Bulk: a backlog of identical chat records in
 * chunks. Time is compressed by F: arrivals come F× faster and every sim
 * engine runs with timeScale = 1/F, so each wall latency × F is model time;
 * all figures are printed in model time.
 *
 * Setups, each on a fresh private Redis with `workers` processes = modelled
 * GPUs (sim backend: Llama-2-70B on H100, common/sim/sim-model.ts),
 * each with rtSlots real-time slots and bulkSlots bulk-chunk slots:
 *   (a) fifo      one BullMQ queue, both kinds, rtSlots + bulkSlots jobs per worker
 *   (b) priority  the same queue, real-time at priority 1, bulk at 2
 *   (c) split     a real-time queue (rtSlots) and a bulk queue (bulkSlots)
 *   (c') split-prio the same, with the engine's priority policy (real-time first)
 *   (c") gpu-split  whole GPUs split: BENCH_GPU_SPLIT_RT (2) workers serve
 *                 real-time only, the others bulk only (dedicated pools)
 *   (d) interfleet the fleet: producer HTTP API, a batch over file://, the
 *                 scheduler's bulk budget, gpu-worker processes (backend sim)
 *   (d') interfleet-fcfs the same with engines that ignore priorities
 * The engines of (a)–(c) and (d') serve first come, first served (vLLM's
 * default policy, what plain BullMQ in front of a default server gets); those
 * of (c') and (d) put real-time first (vLLM's priority policy, which
 * interfleet asks for at its backend seam). (c') and (d') separate what the
 * engine's priority does from what the scheduler's bulk budget does.
 *
 * Pool size. With 2 engines this slice's real-time load alone takes about
 * half of their compute, so no scheduler can keep 80 % of bulk alone: the
 * model-only frontier printed at the start (simulate(), real-time first over
 * an endless bulk backlog) reads 43 % there, and 83 % with 6 engines, the
 * default.
 * and two baselines: real-time alone (its p99 TTFT × 2 is the objective) and
 * bulk alone (the throughput others are relative to). Bulk throughput is
 * output tokens per model second over the slice's window, pro-rated per
 * chunk (colocate-bulk-meter.ts); bulk runs WARMUP model seconds before it.
 *
 * Env (defaults): BENCH_SLICE_START_MIN (10), BENCH_SLICE_MIN (3), BENCH_F (10),
 * BENCH_WORKERS (6), BENCH_RT_SLOTS (the sim's maxNumSeqs, 256), BENCH_BULK_SLOTS (8), BENCH_GPU_SPLIT_RT (2),
 * BENCH_CHUNK_RECORDS (64), BENCH_BATCH_SIZE (64), BENCH_BULK_CHUNKS (100 per worker),
 * BENCH_BULK_PROMPT (512), BENCH_BULK_OUTPUT (128), BENCH_WARMUP_S (60, model),
 * BENCH_DRAIN_S (300, model), BENCH_REPS (1), BENCH_SETUPS (all:
 * rt-alone,bulk-alone,fifo,priority,split,split-prio,gpu-split,interfleet,interfleet-fcfs), BENCH_SVG
 * (docs/colocate.svg; "-" for none).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../../common/config.ts';
import { startFleet, scaledClocks } from './colocate-fleet.ts';
import { startHarness, type HarnessKind } from './colocate-harness.ts';
import { startPrivateRedis } from '../../launcher/local-redis.ts';
import { replay, type ReplayOutcome } from './colocate-replay.ts';
import { shareWithin, summarizeTtft, verdict, type Point } from './colocate-report.ts';
import { tokensInWindow } from './colocate-bulk-meter.ts';
import type { ColocateParams, RunningSetup } from './colocate-setup.ts';
import { scatterSvg } from './colocate-svg.ts';
import { loadTrace, sliceTrace } from './colocate-trace.ts';
import { simulate } from '../../common/sim/sim-scheduler.ts';
import { fmtInt, fmtMs, median, percentile, table } from './stats.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const TRACE = path.resolve(root, '../shared/data/azure-llm-inference-trace-2023/AzureLLMInferenceTrace_conv.csv');

const num = (name: string, def: number): number => {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return v;
};
const SLICE_START_MIN = Number(process.env.BENCH_SLICE_START_MIN ?? '10');
const SLICE_MIN = num('BENCH_SLICE_MIN', 3);
const F = num('BENCH_F', 10);
const REPS = Math.round(num('BENCH_REPS', 1));
const WARMUP_S = num('BENCH_WARMUP_S', 60);
// Long enough for the longest answers to end (the fleet reports TTFT with the answer).
const DRAIN_S = num('BENCH_DRAIN_S', 300);
const SVG_OUT = process.env.BENCH_SVG ?? path.join(root, 'docs/colocate.svg');
const ALL = [
  'rt-alone',
  'bulk-alone',
  'fifo',
  'priority',
  'split',
  'split-prio',
  'gpu-split',
  'interfleet',
  'interfleet-fcfs',
] as const;
type SetupName = (typeof ALL)[number];
const SETUPS = (process.env.BENCH_SETUPS ?? ALL.join(',')).split(',') as SetupName[];
for (const s of SETUPS) if (!ALL.includes(s)) throw new Error(`BENCH_SETUPS: unknown setup ${s}`);
/** Cap on the whole bench (wall). */
const TOTAL_MAX_MS = 30 * 60_000;

const simDefaults = configSchema.parse({}).pools[0]!.sim;
const WORKERS = Math.round(num('BENCH_WORKERS', 6));
const params: ColocateParams = {
  workers: WORKERS,
  // The fewest GPUs that hold real-time within the objective alone: 2 of 6 here (real-time alone on
  // 2 engines reads p99 ~1,400 ms model against an objective of ~1,800).
  rtWorkers: Math.round(num('BENCH_GPU_SPLIT_RT', 2)),
  // As many real-time slots as the engine has sequences: fewer, and real-time requests wait in the
  // queue whenever bulk slows decoding: chats then last longer, so more are in flight at once
  // (the frontier line prints the peak: 181 per engine over bulk against 91 alone at 2 workers).
  rtSlots: Math.round(num('BENCH_RT_SLOTS', simDefaults.maxNumSeqs)),
  // Bulk records in hand for twice the engine's sequences (8 × 64 = 2 × 256): a chunk's records start
  // and end together, and with only one engine's worth the seats stand empty between chunks
  // (compare bulk alone with BENCH_BULK_SLOTS=4).
  bulkSlots: Math.round(num('BENCH_BULK_SLOTS', 8)),
  sim: { ...simDefaults, timeScale: 1 / F },
  batchSize: Math.round(num('BENCH_BATCH_SIZE', 64)),
  chunkRecords: Math.round(num('BENCH_CHUNK_RECORDS', 64)),
  // Enough that bulk never runs dry within warm-up + slice: 6,400 records a worker, against ~2,000 at
  // bulk alone's printed rate (6,549 tok/s ÷ 6 workers ÷ 128 output tokens × 240 model s).
  backlogChunks: Math.round(num('BENCH_BULK_CHUNKS', 100 * WORKERS)),
  bulkPromptTokens: Math.round(num('BENCH_BULK_PROMPT', 512)),
  bulkOutputTokens: Math.round(num('BENCH_BULK_OUTPUT', 128)),
};

const LABEL: Record<SetupName, string> = {
  'rt-alone': 'real-time alone',
  'bulk-alone': 'bulk alone',
  fifo: '(a) one FIFO queue',
  priority: '(b) BullMQ priorities',
  split: '(c) static split',
  'split-prio': "(c') split + engine priority",
  'gpu-split': '(c") GPUs split',
  interfleet: '(d) interfleet',
  'interfleet-fcfs': "(d') interfleet, FCFS engine",
};

interface RunResult {
  outcome: ReplayOutcome | undefined;
  /** Bulk output tokens per model second in the window; NaN without bulk. */
  bulkTps: number;
  bulkRecords: number;
  notes: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, limitMs: number): Promise<boolean> {
  const until = performance.now() + limitMs;
  while (!cond()) {
    if (performance.now() > until) return false;
    await sleep(20);
  }
  return true;
}

/**
 * The engine's scheduling policy per setup: plain BullMQ in front of a default vLLM is first come,
 * first served ((a)–(c)); interfleet asks for real-time first (d). (c') gives the static split the
 * engine's priority alone, (d') takes it from interfleet: together they show what the scheduler adds.
 */
function withPolicy(name: SetupName): ColocateParams {
  const priority = name === 'split-prio' || name === 'interfleet' || name === 'rt-alone' || name === 'bulk-alone';
  return { ...params, sim: { ...params.sim, schedulingPolicy: priority ? 'priority' : 'fcfs' } };
}

async function runOne(
  name: SetupName,
  slice: ReturnType<typeof sliceTrace>,
  sliceMs: number,
  tmp: string,
  objectiveMs: number,
): Promise<RunResult> {
  const withRt = name !== 'bulk-alone';
  const withBulk = name !== 'rt-alone';
  const redis = await startPrivateRedis();
  let setup: RunningSetup | undefined;
  try {
    setup =
      name === 'interfleet' || name === 'interfleet-fcfs'
        ? await startFleet(withPolicy(name), redis.url, tmp, objectiveMs / F, F)
        : await startHarness(
            (
              {
                'rt-alone': 'rt-alone',
                'bulk-alone': 'bulk-alone',
                fifo: 'fifo',
                priority: 'priority',
                split: 'split',
                'split-prio': 'split',
                'gpu-split': 'gpu-split',
              } as Record<string, HarnessKind>
            )[name]!,
            withPolicy(name),
            redis.url,
          );
    const meter = setup.meter;
    if (withBulk) {
      await setup.startBulk();
      if (!(await waitFor(() => meter.firstActiveAt !== undefined, 60_000)))
        throw new Error(`${name}: no bulk chunk started within 60 s`);
      await sleep((WARMUP_S * 1000) / F);
    }
    const t1 = performance.now();
    let outcome: ReplayOutcome | undefined;
    if (withRt) outcome = await replay(slice, F, setup.send, (DRAIN_S * 1000) / F);
    else await sleep(sliceMs / F);
    const t2 = t1 + sliceMs / F;
    let bulkTps = Number.NaN;
    if (withBulk) {
      // Chunks running at the window's end are counted pro rata, so wait for them to finish.
      const done = await waitFor(() => meter.runningSince(t2) === 0, (DRAIN_S * 1000) / F);
      if (!done)
        console.log(`  ${name}: ${meter.runningSince(t2)} chunks still running at the end; counted as nothing`);
      bulkTps = tokensInWindow(meter.spans, t1, t2) / (((t2 - t1) * F) / 1000);
    }
    return { outcome, bulkTps, bulkRecords: meter.records, notes: await setup.notes() };
  } finally {
    await setup?.close().catch((err: unknown) => console.error(`${name}: close failed`, err));
    await redis.stop();
  }
}

/** simulate() per engine: real-time (round robin) over an endless bulk backlog, vs that backlog alone. */
function modelFrontier(slice: ReturnType<typeof sliceTrace>, sliceMs: number, p: ColocateParams) {
  // Enough bulk that the engine never runs out of it within the slice.
  const backlog = Array.from({ length: 40 * p.sim.maxNumSeqs }, () => ({
    arrivalMs: 0,
    promptTokens: p.bulkPromptTokens,
    outputTokens: p.bulkOutputTokens,
    priority: 1,
  }));
  const bulkDone = (rs: ReturnType<typeof simulate>) => rs.filter((r) => r.finishMs <= sliceMs).length;
  const ttft: number[] = [];
  let mixed = 0;
  let alone = 0;
  // Most real-time requests in one engine at once, alone and over bulk: what its real-time slots must hold.
  const inFlight = { alone: 0, overBulk: 0 };
  for (let w = 0; w < p.workers; w++) {
    const rt = slice.filter((_, i) => i % p.workers === w).map((r) => ({ ...r, priority: 0 }));
    const rs = simulate([...rt, ...backlog], p.sim);
    for (const r of rs.slice(0, rt.length)) ttft.push(r.ttftMs);
    mixed += bulkDone(rs.slice(rt.length));
    alone += bulkDone(simulate(backlog, p.sim));
    inFlight.overBulk = Math.max(inFlight.overBulk, peakInFlight(rt, rs));
    inFlight.alone = Math.max(inFlight.alone, peakInFlight(rt, simulate(rt, p.sim)));
  }
  const sorted = Float64Array.from(ttft).sort();
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), bulkShare: mixed / alone, inFlight };
}

/** Most of `reqs` between arrival and finish at once (results[i] belongs to reqs[i]). */
function peakInFlight(reqs: readonly { arrivalMs: number }[], results: ReturnType<typeof simulate>): number {
  const events = reqs.flatMap((r, i) => [
    [r.arrivalMs, 1],
    [results[i]!.finishMs, -1],
  ]);
  events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let now = 0;
  let peak = 0;
  for (const [, d] of events) peak = Math.max(peak, (now += d!));
  return peak;
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  const trace = loadTrace(TRACE);
  const slice = sliceTrace(trace, SLICE_START_MIN, SLICE_MIN);
  const sliceMs = SLICE_MIN * 60_000;
  const mean = (f: (r: (typeof slice)[number]) => number) => slice.reduce((s, r) => s + f(r), 0) / slice.length;
  const cpus = os.cpus();
  console.log('bench:colocate — real-time (Azure trace) and bulk on shared modelled GPUs');
  console.log(`date ${new Date(startedAt).toISOString()}`);
  console.log(
    `machine: node ${process.version}, ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? '?'}), load avg ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (shared: other people run tests on it)`,
  );
  console.log(
    `trace: ${trace.length} requests; slice minutes ${SLICE_START_MIN}–${SLICE_START_MIN + SLICE_MIN}: ${slice.length} requests (${(slice.length / (sliceMs / 1000)).toFixed(2)}/s model), mean prompt ${mean((r) => r.promptTokens).toFixed(0)} tokens, mean output ${mean((r) => r.outputTokens).toFixed(0)}`,
  );
  console.log(
    `time compression F = ${F}: arrivals ×${F}, sim timeScale 1/${F}; latencies below are wall × ${F} (model ms)`,
  );
  console.log(
    `fleet: ${params.workers} workers (one modelled GPU each: ${simDefaults.maxNumSeqs} seqs, ${simDefaults.maxNumBatchedTokens} tokens/step, chunked prefill ${simDefaults.chunkedPrefill}); per worker ${params.rtSlots} real-time slots + ${params.bulkSlots} bulk-chunk slots`,
  );
  console.log(
    `bulk: ${params.backlogChunks} chunks × ${params.chunkRecords} records (${fmtInt(params.backlogChunks * params.chunkRecords)}), each ${params.bulkPromptTokens} prompt + ${params.bulkOutputTokens} output tokens, micro-batches of ${params.batchSize}; warm-up ${WARMUP_S} s, drain ≤ ${DRAIN_S} s (model)`,
  );
  // The model alone (no queues, timers or CPU): what real-time alone should read if the run were exact.
  const ref = Float64Array.from(
    Array.from({ length: params.workers }, (_, w) => slice.filter((_, i) => i % params.workers === w)).flatMap((part) =>
      simulate(part, params.sim).map((r) => r.ttftMs),
    ),
  ).sort();
  console.log(
    `model-only reference, real-time alone (simulate(), round robin over ${params.workers} engines): TTFT p50 ${fmtMs(percentile(ref, 50))} p99 ${fmtMs(percentile(ref, 99))} ms`,
  );
  // The best any scheduler can do in this model: real-time ahead of an endless bulk backlog in each
  // engine (nothing capped), against bulk alone over the same model time.
  const frontier = modelFrontier(slice, sliceMs, params);
  console.log(
    `model-only frontier (simulate(): real-time at priority 0 over an endless bulk backlog at priority 1, per engine): real-time TTFT p50 ${fmtMs(frontier.p50)} p99 ${fmtMs(frontier.p99)} ms (${(frontier.p99 / percentile(ref, 99)).toFixed(2)}× alone); bulk ${(frontier.bulkShare * 100).toFixed(0)} % of bulk alone — the most bulk any setup can keep at this load; at most ${frontier.inFlight.overBulk} real-time requests in one engine at once (${frontier.inFlight.alone} alone)`,
  );
  const clocks = scaledClocks(F);
  console.log(
    `(d) product clocks ÷ F: heartbeat ${clocks.heartbeatMs} ms, latency window ${clocks.latencyWindowMs} ms, balance every ${clocks.balanceEveryMs} ms, hold after decrease ${clocks.holdAfterDecreaseMs} ms, admit every ${clocks.admitEveryMs} ms (wall)`,
  );
  console.log(`${REPS} repetition(s); setups: ${SETUPS.join(', ')}`);

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'interfleet-colocate-'));
  const results = new Map<SetupName, RunResult[]>();
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${TOTAL_MAX_MS / 60_000} min; stopping`);
    process.exit(2);
  }, TOTAL_MAX_MS);
  const rtAloneP99 = (): number => median((results.get('rt-alone') ?? []).map((r) => summarizeTtft(r.outcome!).p99));
  try {
    for (let rep = 1; rep <= REPS; rep++) {
      for (const name of SETUPS) {
        const objective = 2 * rtAloneP99();
        if (name.startsWith('interfleet') && Number.isNaN(objective))
          throw new Error('interfleet needs rt-alone first (its objective)');
        const t0 = performance.now();
        const r = await runOne(name, slice, sliceMs, tmp, objective);
        results.set(name, [...(results.get(name) ?? []), r]);
        const s = r.outcome ? summarizeTtft(r.outcome) : undefined;
        console.log(
          `  rep ${rep} ${LABEL[name].padEnd(22)} ${s ? `TTFT p50 ${fmtMs(s.p50)} p99 ${fmtMs(s.p99)} ms, unanswered ${s.unanswered}, errors ${s.errors}` : ''}` +
            `${Number.isNaN(r.bulkTps) ? '' : `  bulk ${fmtInt(r.bulkTps)} tok/s`}  (${((performance.now() - t0) / 1000).toFixed(0)} s wall)`,
        );
        if (r.outcome?.firstError) console.log(`    first error: ${r.outcome.firstError}`);
        for (const n of r.notes) console.log(`    ${n}`);
      }
    }
  } finally {
    clearTimeout(watchdog);
    rmSync(tmp, { recursive: true, force: true });
  }

  const objective = 2 * rtAloneP99();
  const bulkAlone = median((results.get('bulk-alone') ?? []).map((r) => r.bulkTps));
  const rows: string[][] = [];
  const points = new Map<SetupName, Point & { lb: boolean }>();
  for (const name of SETUPS) {
    const runs = results.get(name) ?? [];
    const sums = runs.filter((r) => r.outcome).map((r) => summarizeTtft(r.outcome!));
    const p50 = median(sums.map((s) => s.p50));
    const p99 = median(sums.map((s) => s.p99));
    const lb = (k: 'p50LowerBound' | 'p99LowerBound') => (sums.some((s) => s[k]) ? '≥' : '');
    const share = median(runs.filter((r) => r.outcome).map((r) => shareWithin(r.outcome!, objective)));
    const tps = median(runs.map((r) => r.bulkTps));
    const rel = tps / bulkAlone;
    if (sums.length > 0)
      points.set(name, { p99, bulkRel: Number.isNaN(rel) ? 0 : rel, lb: lb('p99LowerBound') !== '' });
    rows.push([
      LABEL[name],
      sums.length ? fmtInt(median(sums.map((s) => s.n))) : '-',
      sums.length ? fmtInt(median(sums.map((s) => s.unanswered + s.errors))) : '-',
      sums.length ? `${lb('p50LowerBound')}${fmtMs(p50)}` : '-',
      sums.length ? `${lb('p99LowerBound')}${fmtMs(p99)}` : '-',
      sums.length && !Number.isNaN(objective) ? (p99 <= objective ? 'yes' : 'no') : '-',
      sums.length && !Number.isNaN(share) ? `${(share * 100).toFixed(1)} %` : '-',
      Number.isNaN(tps) ? '-' : fmtInt(tps),
      Number.isNaN(rel) ? '-' : `${(rel * 100).toFixed(0)} %`,
    ]);
  }
  const header = [
    'setup',
    'rt requests',
    'unanswered',
    'TTFT p50 ms',
    'TTFT p99 ms',
    'p99 ≤ objective',
    'share ≤ objective',
    'bulk tok/s',
    'vs bulk alone',
  ];
  console.log(
    `\n== results (model time; median of ${REPS}); objective: p99 TTFT ≤ 2 × real-time alone = ${fmtMs(objective)} ms ==`,
  );
  console.log(table(header, rows));
  console.log('≥: a lower bound (requests still unanswered at the end count with the time they had waited).');
  console.log('\nmarkdown:');
  console.log(`| ${header.join(' | ')} |\n|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);

  const d = points.get('interfleet');
  if (d) {
    const base: Record<string, Point> = {};
    for (const n of ['fifo', 'priority', 'split', 'gpu-split'] as const) {
      const p = points.get(n);
      if (p) base[LABEL[n]] = p;
    }
    const v = verdict(d, objective, base);
    console.log(
      `\ntarget: (d) meets the objective: ${v.meetsObjective ? 'yes' : 'no'}; keeps ≥ 80 % of bulk alone: ${v.keeps80 ? 'yes' : 'no'}; ` +
        `better on one axis and worse on neither, vs ${Object.entries(v.dominates)
          .map(([k, ok]) => `${k}: ${ok ? 'yes' : 'no'}`)
          .join(', ')}`,
    );
  }
  if (SVG_OUT !== '-' && points.size > 0) {
    const svg = scatterSvg({
      title: `bench:colocate — ${params.workers} sim GPUs, Azure conv trace ${SLICE_MIN} min slice, F = ${F}`,
      xLabel: 'bulk throughput, relative to bulk alone',
      yLabel: 'real-time p99 time to first token (model time)',
      points: [...points].map(([n, p]) => ({ label: LABEL[n], x: p.bulkRel, y: p.p99, lowerBound: p.lb })),
      hline: Number.isNaN(objective) ? undefined : { y: objective, label: `objective ${fmtMs(objective)} ms` },
    });
    writeFileSync(SVG_OUT, svg);
    console.log(`\nplot written to ${path.relative(root, SVG_OUT)}`);
  }
  console.log(`total bench time ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
}

await main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('bench failed:', err);
    process.exit(1);
  },
);
