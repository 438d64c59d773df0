/**
 * `npm run bench:realtime`: end-to-end latency of interfleet's real-time path
 * against raw BullMQ and a plain Redis list, on the same Redis, in one run.
 *
 * - interfleet: the producer in this process (HTTP on 127.0.0.1, port 0) and
 *   ONE gpu-worker child process (`gpu-worker/main.ts`, pool `bench`, backend
 *   `echo`, realtime concurrency 64); callers POST /v1/infer over keep-alive
 *   HTTP from this process.
 * - baseline: `queue.add` + `job.waitUntilFinished(queueEvents)` from this
 *   process, one BullMQ Worker (concurrency 64, no-op processor) in a child
 *   process. No HTTP on this path.
 * - floor: plain list request/reply (LPUSH + BRPOP), responder in a child.
 *
 * Two phases: "direct" (everything straight to Redis) and "interconnect"
 * (each worker-side process reaches Redis through a TCP delay proxy adding
 * BENCH_DELAY_MS, default 1 ms, each way; callers and producer stay direct —
 * the GKE↔OKE split). The proxy counts Redis commands and bursts per request.
 *
 * Bounded: fixed request counts, a time cap per run and for the whole bench;
 * everything runs under a random key prefix that is deleted at the end.
 * Env: REDIS_URL (loopback only), BENCH_REPS (3), BENCH_SCALE (1: multiplies
 * request counts), BENCH_DELAY_MS (1); for quick looks BENCH_PHASES (direct,proxy)
 * and BENCH_SYSTEMS (interfleet,bullmq,floor,http) select a subset.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { parseConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { startProducer, type RunningProducer } from '../../producer/server.ts';
import { BASELINE_QUEUE, startBullmqCaller, type BullmqCaller } from './bullmq-baseline.ts';
import { Child } from './children.ts';
import { procCpuSeconds, redisCpuSeconds, sampleCpu, selfCpuSeconds, type CpuProbe } from './cpu.ts';
import type { ProxyStats } from './delay-proxy.ts';
import { INFER_BODY, startHttpCaller, type HttpCaller } from './http-caller.ts';
import { closedLoop, paced, type Call } from './load.ts';
import { startListCaller, type ListCaller } from './list-floor.ts';
import { fmtInt, fmtMs, median, medianStats, table, type RunStats } from './stats.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const REPS = Math.max(1, Number.parseInt(process.env.BENCH_REPS ?? '3', 10) || 3);
const SCALE = Number(process.env.BENCH_SCALE ?? '1') || 1;
const DELAY_MS = Number(process.env.BENCH_DELAY_MS ?? '1');
const PHASES = (process.env.BENCH_PHASES ?? 'direct,proxy').split(',');
const SYSTEMS = (process.env.BENCH_SYSTEMS ?? 'interfleet,bullmq,floor,http').split(',');
const CONCURRENCY = 64;
/** BullMQ Workers splitting the lane's slots (pools[].lanes.realtime.fetchers). */
const FETCHERS = Math.max(1, Number.parseInt(process.env.BENCH_FETCHERS ?? '4', 10) || 4);
/** Cap on one measured run, and on the whole benchmark. */
const RUN_MAX_MS = 30_000;
const TOTAL_MAX_MS = 8 * 60_000;

type PathKind = 'direct' | 'proxy';
type System = 'interfleet' | 'bullmq' | 'floor' | 'http';

interface LoadSpec {
  label: string;
  kind: 'closed' | 'paced';
  /** Closed loop: callers. Paced: most requests in flight at once. */
  c: number;
  /** Paced: requests per second. */
  rate?: number;
}
const PACED_RATE = 1000;
const LOADS = {
  c1: { label: '1', kind: 'closed', c: 1 },
  cN: { label: String(CONCURRENCY), kind: 'closed', c: CONCURRENCY },
  paced: { label: `${CONCURRENCY} @${PACED_RATE}/s`, kind: 'paced', c: CONCURRENCY, rate: PACED_RATE },
} as const satisfies Record<string, LoadSpec>;
type LoadId = keyof typeof LOADS;

/** Requests per measured run. */
const COUNTS: Record<PathKind, Partial<Record<`${System}.${LoadId}`, number>>> = {
  direct: {
    'interfleet.c1': 3000,
    'interfleet.cN': 20_000,
    'interfleet.paced': 4000,
    'bullmq.c1': 3000,
    'bullmq.cN': 20_000,
    'bullmq.paced': 4000,
    'floor.c1': 3000,
    'http.c1': 3000,
  },
  proxy: {
    'interfleet.c1': 500,
    'interfleet.cN': 5000,
    'bullmq.c1': 500,
    'bullmq.cN': 5000,
    'floor.c1': 500,
  },
};
const scaled = (n: number): number => Math.max(100, Math.round(n * SCALE));

const SYSTEM_LABEL: Record<System, string> = {
  interfleet: 'interfleet (HTTP)',
  bullmq: 'BullMQ (no HTTP)',
  floor: 'Redis list floor',
  http: 'HTTP only (404)',
};
const PATH_LABEL: Record<PathKind, string> = { direct: 'direct', proxy: `+${DELAY_MS}ms/way` };

interface Sample {
  stats: RunStats;
  /** CPU seconds spent by each party during the measured run. */
  cpu: Record<string, number>;
  traffic: ProxyStats | undefined;
}

const results = new Map<string, Sample[]>();
const resultKey = (p: PathKind, load: LoadId, s: System): string => `${p}|${load}|${s}`;

const live = new Set<Child>();
function startChild(name: string, modulePath: string, env: Record<string, string>): Child {
  const child = Child.start(name, modulePath, env);
  live.add(child);
  void child.proc.once('exit', () => live.delete(child));
  return child;
}

function assertLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
    throw new Error(
      `REDIS_URL must point at this machine (127.0.0.1), got ${host}: the benchmark sends load only to loopback`,
    );
  }
}

async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  for (let rounds = 0; rounds < 100_000; rounds++) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
    if (cursor === '0') break;
  }
  return deleted;
}

async function pingRttMs(url: string, n = 300): Promise<{ p50: number; p99: number }> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    await redis.ping();
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await redis.ping();
      lat.push(performance.now() - t0);
    }
    lat.sort((a, b) => a - b);
    return { p50: median(lat), p99: lat[Math.ceil(0.99 * lat.length) - 1]! };
  } finally {
    redis.disconnect();
  }
}

interface Measure {
  path: PathKind;
  system: System;
  load: LoadId;
  total: number;
  call: Call;
  rep: number;
  probes: CpuProbe[];
  proxy?: { child: Child; name: string } | undefined;
}

function runLoad(spec: LoadSpec, call: Call, total: number): ReturnType<typeof closedLoop> {
  return spec.kind === 'closed'
    ? closedLoop(call, total, spec.c, RUN_MAX_MS)
    : paced(call, total, spec.rate!, spec.c, RUN_MAX_MS);
}

async function measure(m: Measure): Promise<void> {
  const spec: LoadSpec = LOADS[m.load];
  // A short warm-up at the same concurrency, so each run starts in steady state.
  await closedLoop(m.call, Math.max(spec.c * 2, Math.min(300, Math.ceil(m.total / 10))), spec.c, 10_000);
  if (m.proxy) await m.proxy.child.request({ type: 'reset', name: m.proxy.name });
  const cpu = await sampleCpu(m.probes);
  const { stats, firstError } = await runLoad(spec, m.call, m.total);
  const spent = await cpu.since();
  let traffic: ProxyStats | undefined;
  if (m.proxy) {
    const reply = await m.proxy.child.request({ type: 'stats', name: m.proxy.name });
    traffic = (reply.stats as Record<string, ProxyStats>)[m.proxy.name];
  }
  const key = resultKey(m.path, m.load, m.system);
  results.set(key, [...(results.get(key) ?? []), { stats, cpu: spent, traffic }]);
  const rtt = traffic ? `  cmds/req ${(traffic.commands / stats.n).toFixed(2)}` : '';
  console.log(
    `  rep ${m.rep} ${PATH_LABEL[m.path].padEnd(9)} ${spec.label.padEnd(11)} ${SYSTEM_LABEL[m.system].padEnd(18)}` +
      ` n=${stats.n} p50 ${fmtMs(stats.p50)} p90 ${fmtMs(stats.p90)} p99 ${fmtMs(stats.p99)} ms` +
      `  ${fmtInt(stats.rps)} req/s${stats.errors ? `  ERRORS ${stats.errors}` : ''}${stats.truncated ? '  (time cap hit)' : ''}${rtt}`,
  );
  if (firstError)
    console.log(`    first error: ${firstError instanceof Error ? firstError.message : JSON.stringify(firstError)}`);
}

interface Callers {
  http: HttpCaller;
  /** POST /v1/infer naming no pool: 404 after validation, no Redis: the HTTP share. */
  http404: HttpCaller;
  bullmq: BullmqCaller;
  list: ListCaller;
}

async function runPhase(
  kind: PathKind,
  prefix: string,
  yamlPath: string,
  callers: Callers,
  statsRedis: Redis,
): Promise<void> {
  console.log(
    `\n== phase: ${kind === 'direct' ? 'direct (all processes straight to Redis)' : `interconnect (worker side through a delay proxy, +${DELAY_MS} ms each way)`} ==`,
  );
  let proxy: Child | undefined;
  const urls: Record<System, string> = { interfleet: REDIS_URL, bullmq: REDIS_URL, floor: REDIS_URL, http: REDIS_URL };
  if (kind === 'proxy') {
    proxy = startChild('delay-proxy', path.join(here, 'delay-proxy.child.ts'), {
      BENCH_UPSTREAM: REDIS_URL,
      BENCH_DELAY_MS: String(DELAY_MS),
      BENCH_PROXIES: 'interfleet,bullmq,floor,calibrate',
    });
    const ports = (await proxy.ready).ports as Record<string, number>;
    for (const s of ['interfleet', 'bullmq', 'floor'] as const) urls[s] = `redis://127.0.0.1:${ports[s]}`;
    const direct = await pingRttMs(REDIS_URL);
    const proxied = await pingRttMs(`redis://127.0.0.1:${ports.calibrate}`);
    console.log(
      `  PING round trip, p50 / p99: direct ${fmtMs(direct.p50)} / ${fmtMs(direct.p99)} ms, through the proxy ${fmtMs(proxied.p50)} / ${fmtMs(proxied.p99)} ms`,
    );
  }

  const gpuWorker = startChild('gpu-worker', path.join(root, 'gpu-worker/main.ts'), {
    REDIS_URL: urls.interfleet,
    INTERFLEET_PREFIX: prefix,
    INTERFLEET_CONFIG: yamlPath,
    WORKER_POOL: 'bench',
    LOG_LEVEL: 'warn',
    WORKER_METRICS_PORT: '-1',
    WORKER_SHUTDOWN_GRACE_MS: '2000',
  });
  const bullWorker = startChild('bullmq-worker', path.join(here, 'bullmq-worker.child.ts'), {
    BENCH_REDIS_URL: urls.bullmq,
    BENCH_PREFIX: prefix,
    BENCH_QUEUE: BASELINE_QUEUE,
    BENCH_CONCURRENCY: String(CONCURRENCY),
  });
  const responder = startChild('list-responder', path.join(here, 'list-responder.child.ts'), {
    BENCH_REDIS_URL: urls.floor,
    BENCH_PREFIX: prefix,
  });
  try {
    await Promise.all([gpuWorker.ready, bullWorker.ready, responder.ready]);
    if (kind === 'direct') {
      const probe = await callers.http.probe();
      console.log(`  what one interfleet call answers: HTTP ${probe.status} ${JSON.stringify(probe.body)}`);
    }
    const probes = (worker: Child | undefined): CpuProbe[] => [
      { name: 'caller', read: selfCpuSeconds },
      { name: 'worker', read: () => procCpuSeconds(worker?.proc.pid) },
      { name: 'redis', read: () => redisCpuSeconds(statsRedis) },
      ...(proxy ? [{ name: 'proxy', read: () => procCpuSeconds(proxy.proc.pid) }] : []),
    ];
    const setup: Record<System, { call: Call; worker: Child | undefined }> = {
      interfleet: { call: callers.http.call, worker: gpuWorker },
      bullmq: { call: callers.bullmq.call, worker: bullWorker },
      floor: { call: callers.list.call, worker: responder },
      http: { call: callers.http404.call, worker: undefined },
    };
    const run = (system: System, load: LoadId, rep: number): (() => Promise<void>)[] => {
      const total = COUNTS[kind][`${system}.${load}`];
      if (total === undefined || !SYSTEMS.includes(system)) return [];
      const { call, worker } = setup[system];
      const viaProxy = proxy && system !== 'http' ? { child: proxy, name: system } : undefined;
      return [
        () =>
          measure({
            path: kind,
            system,
            load,
            total: scaled(total),
            call,
            rep,
            probes: probes(worker),
            proxy: viaProxy,
          }),
      ];
    };
    const loads: LoadId[] = ['c1', 'cN', 'paced'];
    const runs = (rep: number): (() => Promise<void>)[] => {
      const ours = loads.flatMap((l) => run('interfleet', l, rep));
      const theirs = loads.flatMap((l) => run('bullmq', l, rep));
      const controls = [...run('floor', 'c1', rep), ...run('http', 'c1', rep)];
      // Alternate who goes first, so slow drift does not favour one side.
      return rep % 2 === 1 ? [...ours, ...theirs, ...controls] : [...theirs, ...ours, ...controls];
    };
    // Warm-up of the JITs, connections and Redis scripts on both paths (not measured).
    const warmN = scaled(kind === 'direct' ? 2000 : 1000);
    if (SYSTEMS.includes('interfleet')) await closedLoop(callers.http.call, warmN, CONCURRENCY, 15_000);
    if (SYSTEMS.includes('bullmq')) await closedLoop(callers.bullmq.call, warmN, CONCURRENCY, 15_000);
    for (let rep = 1; rep <= REPS; rep++) for (const r of runs(rep)) await r();
  } finally {
    await Promise.all([gpuWorker.stop(), bullWorker.stop(), responder.stop()]);
    await proxy?.stop();
  }
}

const ALL_LOADS: LoadId[] = ['c1', 'cN', 'paced'];
const ALL_SYSTEMS: System[] = ['interfleet', 'bullmq', 'floor', 'http'];

function latencyTable(): string {
  const rows: string[][] = [];
  for (const p of ['direct', 'proxy'] as const) {
    for (const l of ALL_LOADS) {
      for (const s of ALL_SYSTEMS) {
        const samples = results.get(resultKey(p, l, s));
        if (!samples) continue;
        const m = medianStats(samples.map((x) => x.stats));
        rows.push([
          PATH_LABEL[p],
          LOADS[l].label,
          SYSTEM_LABEL[s],
          fmtInt(m.n),
          fmtMs(m.p50),
          fmtMs(m.p90),
          fmtMs(m.p99),
          fmtMs(m.max),
          fmtInt(m.rps),
          String(m.errors),
        ]);
      }
    }
  }
  return table(
    ['path', 'callers', 'system', 'requests', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'req/s', 'errors'],
    rows,
  );
}

function ratioTable(): string {
  const rows: string[][] = [];
  for (const p of ['direct', 'proxy'] as const) {
    for (const l of ALL_LOADS) {
      const ours = results.get(resultKey(p, l, 'interfleet'));
      const base = results.get(resultKey(p, l, 'bullmq'));
      if (!ours || !base) continue;
      const o = medianStats(ours.map((x) => x.stats));
      const b = medianStats(base.map((x) => x.stats));
      const r50 = o.p50 / b.p50;
      rows.push([
        PATH_LABEL[p],
        LOADS[l].label,
        r50.toFixed(2),
        (o.p99 / b.p99).toFixed(2),
        LOADS[l].kind === 'closed' ? (o.rps / b.rps).toFixed(2) : '(paced)',
        r50 <= 0.5 ? 'met' : 'MISSED',
        LOADS[l].c === CONCURRENCY ? `${o.p99 <= 5 ? 'met' : 'MISSED'} (${fmtMs(o.p99)} ms)` : 'n/a',
      ]);
    }
  }
  return table(
    ['path', 'callers', 'p50 ours/base', 'p99 ours/base', 'req/s ours/base', 'p50 <= 0.5x base', 'p99 <= 5 ms @64'],
    rows,
  );
}

function trafficTable(): string {
  const rows: string[][] = [];
  for (const l of ALL_LOADS) {
    for (const s of ALL_SYSTEMS) {
      const samples = results.get(resultKey('proxy', l, s));
      if (!samples) continue;
      const per = (f: (t: ProxyStats) => number): number =>
        median(samples.map((x) => (x.traffic ? f(x.traffic) / x.stats.n : Number.NaN)));
      const names = new Map<string, number[]>();
      for (const x of samples)
        for (const [n, v] of Object.entries(x.traffic?.names ?? {}))
          names.set(n, [...(names.get(n) ?? []), v / x.stats.n]);
      const breakdown = [...names]
        .map(([n, v]) => [n, median(v)] as const)
        .filter(([, v]) => v >= 0.01)
        .sort((a, b) => b[1] - a[1])
        .map(([n, v]) => `${n} ${v.toFixed(2)}`)
        .join(', ');
      rows.push([
        LOADS[l].label,
        SYSTEM_LABEL[s],
        per((t) => t.commands).toFixed(2),
        per((t) => t.c2sBursts).toFixed(2),
        per((t) => t.s2cBursts).toFixed(2),
        breakdown,
      ]);
    }
  }
  return table(
    ['callers', 'system (worker side)', 'commands/req', 'writes/req (w→R)', 'reads/req (R→w)', 'commands per request'],
    rows,
  );
}

function cpuTable(): string {
  const rows: string[][] = [];
  for (const p of ['direct', 'proxy'] as const) {
    for (const l of ALL_LOADS) {
      for (const s of ALL_SYSTEMS) {
        const samples = results.get(resultKey(p, l, s));
        if (!samples) continue;
        const us = (party: string): string => {
          const v = median(samples.map((x) => ((x.cpu[party] ?? Number.NaN) / x.stats.n) * 1e6));
          return Number.isNaN(v) ? '-' : v.toFixed(0);
        };
        const busy = median(
          samples.map(
            (x) => Object.values(x.cpu).reduce((a, b) => a + (Number.isNaN(b) ? 0 : b), 0) / (x.stats.n / x.stats.rps),
          ),
        );
        rows.push([
          PATH_LABEL[p],
          LOADS[l].label,
          SYSTEM_LABEL[s],
          us('caller'),
          us('worker'),
          us('redis'),
          us('proxy'),
          busy.toFixed(2),
        ]);
      }
    }
  }
  return table(
    ['path', 'callers', 'system', 'caller-side µs/req', 'worker µs/req', 'redis µs/req', 'proxy µs/req', 'cores busy'],
    rows,
  );
}

async function main(): Promise<void> {
  assertLoopback(REDIS_URL);
  const startedAt = Date.now();
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'interfleet-bench-'));
  const yamlPath = path.join(tmp, 'config.yaml');
  writeFileSync(
    yamlPath,
    [
      'log:',
      '  pretty: false',
      'pools:',
      '  - name: bench',
      '    backend: echo',
      '    lanes:',
      '      realtime:',
      `        concurrency: ${CONCURRENCY}`,
      `        fetchers: ${FETCHERS}`,
      '',
    ].join('\n'),
  );
  const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const server = await admin.info('server');
  const version = (name: string): string =>
    (JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
      .version;
  const cpus = os.cpus();
  console.log('bench:realtime — interfleet real-time path vs raw BullMQ vs plain Redis list');
  console.log(`date ${new Date(startedAt).toISOString()}`);
  console.log(
    `node ${process.version}, ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, load avg ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `redis ${/redis_version:(\S+)/.exec(server)?.[1] ?? '?'} at ${REDIS_URL}, bullmq ${version('bullmq')}, ioredis ${version('ioredis')}, fastify ${version('fastify')}`,
  );
  console.log(
    `key prefix ${prefix}; ${REPS} repetitions, medians reported; request counts x${SCALE}; proxy delay ${DELAY_MS} ms each way; interfleet lane: ${CONCURRENCY} slots over ${FETCHERS} fetchers`,
  );
  for (const p of ['direct', 'proxy'] as const) {
    const list = Object.entries(COUNTS[p]).map(([k, n]) => {
      const [system, load] = k.split('.') as [System, LoadId];
      return `${system} ${LOADS[load].label}: ${scaled(n)}`;
    });
    console.log(`requests per run, ${PATH_LABEL[p]}: ${list.join(', ')}`);
  }

  let producer: RunningProducer | undefined;
  let callers: Callers | undefined;
  const cleanup = async (): Promise<void> => {
    for (const c of live) c.kill();
    callers?.http.close();
    callers?.http404.close();
    callers?.list.close();
    await callers?.bullmq.close().catch(() => undefined);
    await producer?.close(1000).catch(() => undefined);
    const deleted = await deleteKeys(admin, prefix).catch(() => -1);
    admin.disconnect();
    rmSync(tmp, { recursive: true, force: true });
    console.log(`\ncleaned up: ${deleted} keys under ${prefix}:* deleted`);
  };
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${TOTAL_MAX_MS / 1000} s; stopping`);
    void cleanup().finally(() => process.exit(2));
  }, TOTAL_MAX_MS);
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));

  try {
    const config = parseConfig(
      { REDIS_URL, INTERFLEET_PREFIX: prefix, WORKER_METRICS_PORT: '-1', LOG_LEVEL: 'warn' },
      readFileSync(yamlPath, 'utf8'),
      yamlPath,
    );
    producer = await startProducer(config, { logger: createLogger(config.log, { role: 'bench' }), port: 0 });
    callers = {
      http: startHttpCaller(producer.url, CONCURRENCY),
      http404: startHttpCaller(producer.url, 1, { ...INFER_BODY, model: 'no-such-pool' }, 404),
      bullmq: await startBullmqCaller(REDIS_URL, prefix),
      list: startListCaller(REDIS_URL, prefix, 1),
    };
    console.log(
      `producer ${producer.url}; callers, producer and BullMQ Queue/QueueEvents in this process; each worker in its own child process`,
    );

    for (const phase of ['direct', 'proxy'] as const)
      if (PHASES.includes(phase)) await runPhase(phase, prefix, yamlPath, callers, admin);

    console.log(
      `\n== results: median of ${REPS} repetitions, latency per request in ms (monotonic clock at the caller) ==`,
    );
    console.log(latencyTable());
    console.log(
      '\ninterfleet includes HTTP (client + fastify server, keep-alive, same process); the BullMQ baseline and the floor do not.',
    );
    console.log('\n== ratios (interfleet / BullMQ baseline) and the targets ==');
    console.log(ratioTable());
    console.log(
      `\n== interconnect: Redis traffic of the worker-side process through the proxy, per request (median of ${REPS}) ==`,
    );
    console.log(trafficTable());
    console.log(
      'method: the proxy parses RESP arrays (*<n>) in the worker→Redis stream to count commands, and counts socket reads in each direction (a "write" is one TCP burst, usually one flush of the client; several commands written together are one write). Counts cover the measured window only, background traffic (heartbeats, blocking-read timeouts) included. Caller/producer traffic goes direct and is not counted.',
    );
    console.log(
      `\n== CPU per request by party (median of ${REPS}); cores busy = all parties' CPU seconds / wall seconds ==`,
    );
    console.log(cpuTable());
    console.log(`\ntotal bench time ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

await main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('bench failed:', err);
    for (const c of live) c.kill();
    process.exit(1);
  },
);
