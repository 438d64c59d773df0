/**
 * `npm run bench:training`: `rounds` mode of the built-in text classifier on
 * real processes (training-fleet.ts: private redis-server, producer,
 * scheduler, N gpu-workers; file:// storage in a temporary folder), with
 * 1, 2 and 4 workers (BENCH_WORKERS), then quality: 3 workers against 1.
 *
 * - Data: the UCI sentiment sentences, split by test/helpers/training-quality.ts (seed
 *   BENCH_SEED, 1): the test split (~20 %) is held out of every job. The
 *   timing jobs train on the rest repeated BENCH_REPEAT (40) times, so that a
 *   round's compute is seconds, not milliseconds (repeats add compute, not
 *   knowledge); the quality jobs on the rest as it is.
 * - Timing job: BENCH_ROUNDS (7) rounds, N ranks, the trainer's default
 *   hyperparameters, submitted over HTTP and polled every second. Per round,
 *   training-timeline.ts takes the rank records' and BullMQ jobs' timestamps
 *   apart (round, compute, the gap between rounds and its parts); figures are
 *   medians over rounds 2..R−1 (round 1 starts cold; round R has no next
 *   admission).
 * - Redis: INFO `total_net_input_bytes` + `total_net_output_bytes` and
 *   `total_commands_processed` of the fleet's private Redis, from submission
 *   to the job's end, over R: every process's traffic (heartbeats, leader
 *   passes, BullMQ's blocking fetches, the poll) — and the same counters over
 *   BENCH_IDLE_MS (10 s) of the idle fleet before, scaled to a round's time:
 *   the part of it the fleet spends anyway. The bench's own INFO reads are
 *   subtracted. Beside it, the model's size and the bytes a round moves
 *   through storage (rank outputs written and read by the reduce, the
 *   round's model written and read by the next round's ranks), from the
 *   checkpoint folder.
 * - Quality: one job with 1 worker (on the 1-worker fleet) and one with 3
 *   workers (on the largest fleet, when it has ≥ 3), BENCH_QUALITY_ROUNDS (5)
 *   rounds each, the same passes over the data; the final models scored on
 *   the test split beside the majority class and the lexicon classifier; and
 *   each checked against the in-process simulation (training-quality.ts),
 *   which must give the same weights. Then the same comparison in process
 *   over the test splits of BENCH_QUALITY_SEEDS (1..5): ~600 test sentences
 *   make one point 6 sentences, so one split alone is a noisy verdict. The
 *   defaults were tuned on seed 1's training data (training-tune.ts); the
 *   other seeds' test splits overlap it, so their figures are slightly kind.
 *
 * The machine's cores are shared: with more workers than cores, ranks
 * contend for them, and the scaling figures say so.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseConfig } from '../../common/config.ts';
import { rankJobId, reduceJobId } from '../../common/topology.ts';
import { readModelDir, type LinearTextModel } from '../../gpu-worker/training/builtin/linear-text-model.ts';
import { paramsSchema } from '../../gpu-worker/training/builtin/train-linear.ts';
import { buildBundles } from './producer-process.ts';
import { median, table } from './stats.ts';
import { countersDelta, POOL, startBenchFleet, type BenchFleet } from './training-fleet.ts';
import {
  accuracy,
  examplesOf,
  lexiconAccuracy,
  majorityAccuracy,
  simulateRounds,
  splitSentences,
  writeObjects,
} from '../helpers/training-quality.ts';
import { roundBreakdowns, type RoundBreakdown, type RoundTimes } from './training-timeline.ts';

const CORES = os.availableParallelism();
const WORKERS = (process.env.BENCH_WORKERS ?? '1,2,4').split(',').map(Number);
const SEED = Number(process.env.BENCH_SEED ?? '1');
const REPEAT = Number(process.env.BENCH_REPEAT ?? '40');
/** worker.heartbeatMs, when set (the product's default otherwise). */
const HEARTBEAT_MS = process.env.BENCH_HEARTBEAT_MS;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '7');
const QUALITY_ROUNDS = Number(process.env.BENCH_QUALITY_ROUNDS ?? '5');
const QUALITY_SEEDS = (process.env.BENCH_QUALITY_SEEDS ?? '1,2,3,4,5').split(',').map(Number);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? '10000');
const JOB_MAX_MS = 15 * 60_000;
if (ROUNDS < 4) throw new Error('BENCH_ROUNDS must be at least 4 (medians over rounds 2..R-1)');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fileUri = (dir: string) => `${pathToFileURL(dir).href}/`;

interface JobRun {
  id: string;
  seconds: number;
  rounds: RoundTimes[];
  /** Redis bytes (in + out) and commands from submission to the end, the bench's INFO reads excepted. */
  redisBytes: number;
  redisCommands: number;
  calls: Map<string, number>;
  finalModelDir: string;
}

interface ApiJob {
  id: string;
  status: string;
  error: string | null;
  models: { round: number; uri: string }[];
}

/** Submits a `rounds` job and waits for it to end; its timestamps and the Redis traffic it caused. */
async function runJob(
  fleet: BenchFleet,
  opts: { workers: number; rounds: number; dataDir: string; checkpointDir: string },
): Promise<JobRun> {
  const before = await fleet.counters();
  const t0 = performance.now();
  const res = await fetch(`${fleet.url}/v1/training/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      pool: POOL,
      command: 'builtin:text-classifier',
      data_uri: fileUri(opts.dataDir),
      mode: 'rounds',
      workers: opts.workers,
      rounds: opts.rounds,
      checkpoint_uri: fileUri(opts.checkpointDir),
      params: { seed: SEED },
    }),
  });
  if (!res.ok) throw new Error(`POST /v1/training/jobs: ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  let job: ApiJob;
  for (;;) {
    await sleep(1000);
    job = (await (await fetch(`${fleet.url}/v1/training/jobs/${id}`)).json()) as ApiJob;
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) break;
    if (performance.now() - t0 > JOB_MAX_MS) throw new Error(`training job ${id} still ${job.status}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = await fleet.counters();
  if (job.status !== 'succeeded') throw new Error(`training job ${id} ${job.status}: ${job.error}`);
  const delta = countersDelta(before, after);

  const records = await fleet.store.ranks(POOL, id);
  const rounds: RoundTimes[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const ranks = [];
    for (const r of records.filter((x) => x.round === round)) {
      const added = await fleet.queue.getJob(rankJobId(id, round, r.rank));
      if (!added || r.endedAt === null || r.metrics.train_seconds === undefined)
        throw new Error(`rank ${r.rank} of round ${round}: no job, end or train_seconds`);
      ranks.push({
        rank: r.rank,
        addedAt: added.timestamp,
        startedAt: r.startedAt,
        endedAt: r.endedAt,
        trainSeconds: r.metrics.train_seconds,
      });
    }
    const reduce = await fleet.queue.getJob(reduceJobId(id, round));
    if (!reduce?.processedOn || !reduce.finishedOn) throw new Error(`round ${round}: its reduce job has no times`);
    rounds.push({
      round,
      ranks,
      reduce: { addedAt: reduce.timestamp, processedOn: reduce.processedOn, finishedOn: reduce.finishedOn },
    });
  }
  return {
    id,
    seconds,
    rounds,
    redisBytes: delta.bytes,
    redisCommands: delta.commands,
    calls: delta.calls,
    finalModelDir: fileURLToPath(job.models.at(-1)!.uri),
  };
}

const dirBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (n, e) => n + (e.isDirectory() ? dirBytes(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).size),
    0,
  );

/** Bytes round r moves through storage: its ranks pull the previous model, upload theirs; the reduce reads them, writes one. */
function storageBytesOfRound(checkpointDir: string, round: number, workers: number): number {
  const dir = path.join(checkpointDir, `round-${round}`);
  const outputs = Array.from({ length: workers }, (_, k) => dirBytes(path.join(dir, `rank-${k}`))).reduce(
    (a, b) => a + b,
    0,
  );
  const previous = round > 1 ? dirBytes(path.join(checkpointDir, `round-${round - 1}`, 'model')) : 0;
  return workers * previous + 2 * outputs + dirBytes(path.join(dir, 'model'));
}

interface FleetResult {
  workers: number;
  run: JobRun;
  rounds: RoundBreakdown[];
  /** Redis bytes and commands per second of the idle fleet. */
  idleBytesPerS: number;
  idleCommandsPerS: number;
  storagePerRound: number;
  modelBytes: number;
  linesPerRound: number;
}

const fmt = (n: number, d = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '-';
const kib = (b: number) => `${fmt(b / 1024, 1)} KiB`;
const pct = (x: number) => `${fmt(x * 100, 1)} %`;

async function main(): Promise<void> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'interfleet-bench-training-'));
  const configFile = path.join(tmp, 'interfleet.yaml');
  const yaml = `pools:\n  - name: default\n${HEARTBEAT_MS ? `worker:\n  heartbeatMs: ${HEARTBEAT_MS}\n` : ''}`;
  writeFileSync(configFile, yaml);
  const config = parseConfig({}, yaml);
  const params = paramsSchema.parse({ seed: SEED });
  console.log(
    `bench:training — ${CORES} cores (${os.cpus()[0]?.model.trim() ?? '?'}), load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}, node ${process.version}, ${new Date().toISOString()}`,
  );
  console.log(
    `config: the product's defaults${HEARTBEAT_MS ? ' but worker.heartbeatMs' : ''} — training pass on each job of train.<pool> that ends, and every ${config.batch.admitEveryMs} ms (batch.admitEveryMs), heartbeats every ${config.worker.heartbeatMs} ms, one training slot per worker; trainer params ${JSON.stringify(params)}`,
  );
  console.log(
    `cores: NOT pinned; Redis, producer, scheduler, this process and ${WORKERS.join('/')} worker(s) share ${CORES} cores with whatever else runs on the machine: with more workers than cores, ranks contend for them`,
  );
  buildBundles();

  const split = await splitSentences(SEED);
  const train = examplesOf(split.train);
  const test = examplesOf(split.test);
  const timingDir = path.join(tmp, 'timing-data');
  const qualityDir = path.join(tmp, 'quality-data');
  const timingLines = await writeObjects(timingDir, split.train, REPEAT);
  await writeObjects(qualityDir, split.train);
  console.log(
    `data: seed ${SEED}: ${train.length} training and ${test.length} test sentences; timing jobs: the training sentences × ${REPEAT} = ${fmt(timingLines)} lines, ${ROUNDS} rounds; quality jobs: the training sentences, ${QUALITY_ROUNDS} rounds`,
  );

  const results: FleetResult[] = [];
  const quality = new Map<number, LinearTextModel>();
  const largest = Math.max(...WORKERS);
  try {
    for (const workers of WORKERS) {
      const fleet = await startBenchFleet(workers, configFile);
      try {
        await sleep(3000); // heartbeats in, the leader elected and passing
        const idle0 = await fleet.counters();
        await sleep(IDLE_MS);
        const idle = countersDelta(idle0, await fleet.counters());
        const checkpointDir = path.join(tmp, `ckpt-timing-${workers}`);
        const run = await runJob(fleet, { workers, rounds: ROUNDS, dataDir: timingDir, checkpointDir });
        const rounds = roundBreakdowns(run.rounds);
        const storage = Array.from({ length: ROUNDS - 1 }, (_, i) =>
          storageBytesOfRound(checkpointDir, i + 2, workers),
        );
        const model = await readModelDir(run.finalModelDir);
        results.push({
          workers,
          run,
          rounds,
          idleBytesPerS: idle.bytes / (IDLE_MS / 1000),
          idleCommandsPerS: idle.commands / (IDLE_MS / 1000),
          storagePerRound: median(storage),
          modelBytes: (model.weights.length + model.bias.length) * 4,
          linesPerRound: timingLines,
        });
        const r = rounds.slice(1);
        console.log(
          `  ${workers} worker(s): job ${run.id} ${fmt(run.seconds, 1)} s; round ${fmt(median(r.map((x) => x.roundMs)) / 1000, 2)} s (rounds 2..${ROUNDS - 1}: ${r.map((x) => fmt(x.roundMs / 1000, 2)).join(', ')})`,
        );
        for (const q of [1, 3]) {
          if (!((q === 1 && workers === 1) || (q === 3 && workers === largest && workers >= 3))) continue;
          const ckpt = path.join(tmp, `ckpt-quality-${q}`);
          const job = await runJob(fleet, {
            workers: q,
            rounds: QUALITY_ROUNDS,
            dataDir: qualityDir,
            checkpointDir: ckpt,
          });
          quality.set(q, await readModelDir(job.finalModelDir));
          console.log(`  quality job with ${q} worker(s): ${job.id} ${fmt(job.seconds, 1)} s`);
        }
      } finally {
        await fleet.stop();
      }
    }

    printTiming(results);
    await printQuality(quality, qualityDir, train, test);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function printTiming(results: readonly FleetResult[]): void {
  const m = (r: FleetResult, f: (b: RoundBreakdown) => number) => median(r.rounds.slice(1).map(f));
  const one = results.find((r) => r.workers === 1);
  console.log(`\n== rounds mode: time per round (medians over rounds 2..${ROUNDS - 1}; ms unless said) ==`);
  console.log(
    table(
      [
        'workers',
        'round s',
        'compute s (slowest rank)',
        'compute s (median rank)',
        'lines×epochs/s',
        'scaling eff.',
        'compute eff.',
        'overhead',
        'rank other',
        'start',
        'gap',
        'to reduce',
        'reduce (run)',
        'admission',
        'next start',
      ],
      results.map((r) => {
        const round = m(r, (b) => b.roundMs);
        const compute = m(r, (b) => b.computeMs);
        const scaling = one ? m(one, (b) => b.roundMs) / (r.workers * round) : NaN;
        const computeEff = one ? m(one, (b) => b.computeMs) / (r.workers * compute) : NaN;
        return [
          String(r.workers),
          fmt(round / 1000, 2),
          fmt(compute / 1000, 2),
          fmt(m(r, (b) => b.computeMedianMs) / 1000, 2),
          fmt((r.linesPerRound * paramsSchema.parse({}).epochs) / (round / 1000)),
          pct(scaling),
          pct(computeEff),
          fmt(m(r, (b) => b.overheadMs)),
          fmt(m(r, (b) => b.rankOtherMs)),
          fmt(m(r, (b) => b.startMs)),
          fmt(m(r, (b) => b.gapMs)),
          fmt(m(r, (b) => b.toReduceMs)),
          `${fmt(m(r, (b) => b.reduceMs))} (${fmt(m(r, (b) => b.reduceRunMs))})`,
          fmt(m(r, (b) => b.admissionMs)),
          fmt(m(r, (b) => b.nextStartMs)),
        ];
      }),
    ),
  );
  console.log(
    `scaling eff. = 1 worker's round time / (N × N workers' round time), i.e. throughput of N over N × throughput of 1; compute eff. the same over the slowest rank's compute. ${CORES} cores: N > ${CORES} cannot exceed ${CORES}/N.`,
  );
  console.log(
    "overhead = round − compute (slowest rank); rank other = a rank's own time less its compute (pull shard and model, start the program, write, upload, settle; median rank); start = admission until every rank runs; gap = last rank's end until every rank of the next round runs = to reduce (until the leader's pass adds the reduce) + reduce (queued and run; its run alone in brackets) + admission (reduce done until the leader's pass admits the next round) + next start.",
  );

  console.log('\n== Redis and storage per round (the whole job over its rounds) ==');
  console.log(
    table(
      [
        'workers',
        'Redis bytes/round',
        'of which idle fleet',
        'commands/round',
        'of which idle fleet',
        'model size',
        'storage bytes/round',
        'Redis bytes / model size',
        'top commands/round',
      ],
      results.map((r) => {
        const roundS = r.run.seconds / ROUNDS;
        const top = [...r.run.calls]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 4)
          .map(([name, n]) => `${name} ${fmt(n / ROUNDS)}`)
          .join(', ');
        const bytes = r.run.redisBytes / ROUNDS;
        return [
          String(r.workers),
          kib(bytes),
          kib(r.idleBytesPerS * roundS),
          fmt(r.run.redisCommands / ROUNDS),
          fmt(r.idleCommandsPerS * roundS),
          kib(r.modelBytes),
          kib(r.storagePerRound),
          pct(bytes / r.modelBytes),
          top,
        ];
      }),
    ),
  );
  console.log(
    'Weights do not pass through Redis: a round moves "storage bytes/round" of model files through storage, and Redis carries only job records, heartbeats and metrics (in + out, every process, the 1 s poll of GET /v1/training/jobs/:id included; "of which idle fleet": what the same fleet did idle over a round\'s time).',
  );
}

async function printQuality(
  fleetModels: ReadonlyMap<number, LinearTextModel>,
  qualityDir: string,
  train: ReturnType<typeof examplesOf>,
  test: ReturnType<typeof examplesOf>,
): Promise<void> {
  console.log(
    `\n== quality: held-out test split (seed ${SEED}, ${test.length} sentences), ${QUALITY_ROUNDS} rounds ==`,
  );
  const rows: string[][] = [];
  const scores = new Map<number, number>();
  for (const workers of [1, 3]) {
    const simulated = await simulateRounds({
      dataDir: qualityDir,
      workers,
      rounds: QUALITY_ROUNDS,
      params: { seed: SEED },
    });
    const fleet = fleetModels.get(workers);
    const same =
      fleet === undefined
        ? 'not run (no fleet that size)'
        : fleet.weights.every((w, i) => w === simulated.weights[i]) &&
            fleet.bias.every((b, i) => b === simulated.bias[i])
          ? 'yes, bit for bit'
          : 'NO';
    const acc = accuracy(fleet ?? simulated, test);
    scores.set(workers, acc);
    rows.push([`rounds, ${workers} worker(s)`, pct(acc), fleet ? 'fleet job' : 'in-process simulation', same]);
  }
  rows.push(['majority class', pct(majorityAccuracy(train, test)), 'of the training split', '']);
  const lexicon = lexiconAccuracy(train, test);
  rows.push(['lexicon (embedded sentiment)', pct(lexicon.asServed), 'as served: neutral is wrong', '']);
  rows.push(['lexicon (embedded sentiment)', pct(lexicon.neutralAsMajority), 'neutral → majority class', '']);
  console.log(table(['model', 'test accuracy', 'from', 'same weights as the simulation'], rows));
  const gap = (scores.get(1)! - scores.get(3)!) * 100;
  console.log(
    `3 workers vs 1 worker (same passes over the data): ${gap >= 0 ? '−' : '+'}${fmt(Math.abs(gap), 1)} points (${Math.abs(gap) <= 1 ? 'within' : 'NOT within'} 1 point)`,
  );

  console.log(
    `\n== quality over ${QUALITY_SEEDS.length} splits (in-process simulation, ${QUALITY_ROUNDS} rounds; test accuracy) ==`,
  );
  const perSeed: number[][] = [];
  for (const seed of QUALITY_SEEDS) {
    const split = await splitSentences(seed);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'interfleet-bench-quality-'));
    try {
      await writeObjects(dir, split.train);
      const [tr, te] = [examplesOf(split.train), examplesOf(split.test)];
      const score = async (workers: number) =>
        accuracy(await simulateRounds({ dataDir: dir, workers, rounds: QUALITY_ROUNDS, params: { seed } }), te);
      const [one, three] = [await score(1), await score(3)];
      const lex = lexiconAccuracy(tr, te);
      perSeed.push([
        seed,
        te.length,
        one,
        three,
        one - three,
        majorityAccuracy(tr, te),
        lex.asServed,
        lex.neutralAsMajority,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const mean = (i: number) => perSeed.reduce((n, r) => n + r[i]!, 0) / perSeed.length;
  const row = (r: (i: number) => number, label: string): string[] => [
    label,
    fmt(r(1)),
    pct(r(2)),
    pct(r(3)),
    `${fmt(r(4) * 100, 1)} pt`,
    pct(r(5)),
    pct(r(6)),
    pct(r(7)),
  ];
  console.log(
    table(
      [
        'seed',
        'test lines',
        '1 worker',
        '3 workers',
        '1 − 3',
        'majority',
        'lexicon as served',
        'lexicon, neutral → majority',
      ],
      [...perSeed.map((r) => row((i) => r[i]!, String(r[0]))), row(mean, 'mean')],
    ),
  );
}

await main();
