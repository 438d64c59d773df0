/**
 * bench:autoscale-live — issue 12's "the simulator must predict the fleet":
 * one policy, run live on `sim` workers with the local actuator and replayed
 * through the pool model, on the same trace segment; replica-hours and the
 * share of minutes within the objective side by side, within 15 %?
 *
 * Workload: minutes FROM..TO of the Azure LLM inference trace 2023
 * (conversation), load scaled by SCALE (each request kept with that
 * probability), real-time only (no batches). Replicas: the sim engine with
 * LIVE_ENGINE (8 sequences a step), so that the segment spans a few
 * replicas at the policy's target utilisation.
 *
 * - Replay: the segment in trace time through decide() (every 5 s) and the
 *   pool model (common/autoscale/replay), its engine curve measured on the
 *   same sim engine parameters, start-up 120 s, heartbeat window 10 s.
 * - Live: the launcher (producer, scheduler leader with the local actuator,
 *   sim gpu-worker processes) with the same policy and cadences compressed
 *   COMPRESS times (autoscale-live-setup.ts); the requests are sent at their
 *   compressed arrival times as streaming chats through the official `openai`
 *   client; first token timed client-side; desired and ready replicas sampled
 *   from the explain endpoint every SAMPLE_MS. Wall figures × COMPRESS are
 *   trace figures.
 *
 * Env: AUTOSCALE_TRACE, AUTOSCALE_LIVE_COMPRESS (6), AUTOSCALE_LIVE_SCALE
 * (0.12), AUTOSCALE_LIVE_FROM_MIN (0), AUTOSCALE_LIVE_TO_MIN (45);
 * AUTOSCALE_LIVE_REPLAY_ONLY=1 prints the replay alone (seconds, no fleet).
 */
import { loadavg } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { stringify } from 'yaml';
import { readPolicyFile } from '../../common/autoscale/policy-file.ts';
import { DEFAULT_RECORD, type BatchSet } from '../../common/autoscale/replay/batches.ts';
import { buildWorkload, curveFor, replayPolicy } from '../../common/autoscale/replay/compare.ts';
import { DecideScaler } from '../../common/autoscale/replay/scalers.ts';
import { minuteP99 } from '../../common/autoscale/replay/summary.ts';
import { loadTrace, shapeTrace } from '../../common/autoscale/replay/trace.ts';
import { replayLoad } from './autoscale-live-client.ts';
import { sampleReplicas, startLiveFleet } from './autoscale-live-fleet.ts';
import {
  minuteAttainment,
  replicaHours,
  startupTimes,
  withinTolerance,
  type ReplicaSample,
} from './autoscale-live-measure.ts';
import { LIVE_ENGINE, LIVE_OBJECTIVE_MS, LIVE_POLICY, TRACE_CADENCE, liveConfigYaml } from './autoscale-live-setup.ts';

const root = path.resolve(import.meta.dirname, '../..');
const TRACE =
  process.env.AUTOSCALE_TRACE ??
  path.resolve(root, '../shared/data/azure-llm-inference-trace-2023/AzureLLMInferenceTrace_conv.csv');
const COMPRESS = Number(process.env.AUTOSCALE_LIVE_COMPRESS ?? 6);
const SCALE = Number(process.env.AUTOSCALE_LIVE_SCALE ?? 0.12);
const FROM_MIN = Number(process.env.AUTOSCALE_LIVE_FROM_MIN ?? 0);
const TO_MIN = Number(process.env.AUTOSCALE_LIVE_TO_MIN ?? 45);
const POOL = 'chat';
const SAMPLE_MS = 250;
const TOLERANCE = 0.15;

const uptime = (): string => execFileSync('uptime', { encoding: 'utf8' }).trim();
const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : Number.isFinite(ms) ? `${Math.round(ms)}` : 'none');

interface Why {
  reason: string;
  /** Per-replica capacity planned with (trace units/s). */
  capacity: number;
}

/** Each reason's share of the decisions, and the mean capacity planned with. */
function whyLine(why: readonly Why[]): string {
  const counts = new Map<string, number>();
  for (const w of why) counts.set(w.reason, (counts.get(w.reason) ?? 0) + 1);
  const shares = [...counts].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${pct(n / why.length)}`);
  const capacity = why.reduce((s, w) => s + w.capacity, 0) / Math.max(1, why.length);
  return `${shares.join(', ')}; capacity planned ${capacity.toFixed(0)} units/s on average`;
}

async function main(): Promise<void> {
  const started = Date.now();
  console.log(`bench:autoscale-live ${new Date().toISOString()}; ${uptime()}`);
  const file = readPolicyFile(stringify(LIVE_POLICY), 'live policy');
  if (!file.ok) throw new Error(file.problems.join('\n'));
  const policy = file.policies[0]!.policy;

  // The segment, from its own first minute, and its requests kept with probability SCALE.
  const trace = loadTrace(TRACE);
  const segment = trace.requests
    .filter((r) => r.arrivalMs >= FROM_MIN * 60_000 && r.arrivalMs < TO_MIN * 60_000)
    .map((r) => ({ ...r, arrivalMs: r.arrivalMs - FROM_MIN * 60_000 }));
  const requests = shapeTrace(segment, { scale: SCALE });
  const batches: BatchSet = { record: DEFAULT_RECORD, batches: [] };
  const workload = buildWorkload(requests, batches, trace.startAt + FROM_MIN * 60_000);
  const traceMs = workload.seconds * 1000;
  console.log(
    `trace: ${path.basename(TRACE)} minutes ${FROM_MIN}–${TO_MIN}, scale ${SCALE} → ${requests.length} requests; ` +
      `time compression ${COMPRESS}× (live: ${(traceMs / COMPRESS / 60_000).toFixed(1)} min of wall clock for ${workload.seconds / 60} trace minutes)`,
  );

  // Replay.
  const curve = curveFor(requests, batches, { engine: { ...LIVE_ENGINE }, requestsPerPoint: 2000, points: 16 });
  const scaler = new DecideScaler(
    'replay',
    policy,
    policy.minReplicas,
    workload.epochMs,
    TRACE_CADENCE.autoscalerEveryMs,
    Number.MAX_SAFE_INTEGER,
  );
  const replay = replayPolicy(workload, scaler, {
    pool: POOL,
    curve,
    objectiveMs: LIVE_OBJECTIVE_MS,
    startupMs: policy.startupMs,
    windowMs: TRACE_CADENCE.latencyWindowMs,
  });
  console.log(
    `sim replica: maxNumSeqs ${LIVE_ENGINE.maxNumSeqs}, ${LIVE_ENGINE.maxNumBatchedTokens} tokens/step; engine curve: real-time saturates at ${Math.round(curve.rtSaturatedUnitsPerSecond)} units/s (${curve.unitsPerRequest.toFixed(0)} units/request)`,
  );
  console.log(
    `policy (trace time): min ${policy.minReplicas}, max ${policy.maxReplicas}, start-up ${policy.startupMs / 1000} s, objective p99 ${LIVE_OBJECTIVE_MS} ms, target utilisation ${policy.realtime.targetUtilization}, capacity hint ${policy.capacityHint} units/s; live: all ÷ ${COMPRESS} (× for rates)`,
  );

  if (process.env.AUTOSCALE_LIVE_REPLAY_ONLY === '1') {
    const r = replay.summary;
    const p99 = minuteP99([replay.run], workload.seconds);
    console.log(
      `replay only: ${r.replicaHours.toFixed(3)} replica-h, ${pct(r.withinShare)} of minutes within (${r.minutesWithin}/${r.minutes}); minute p99s ${p99.map(fmt).join(' ')}`,
    );
    return;
  }

  // Live.
  const fleet = await startLiveFleet(
    liveConfigYaml({ pool: POOL, policy, compress: COMPRESS, objectiveMs: LIVE_OBJECTIVE_MS }),
    POOL,
  );
  const samples: ReplicaSample[] = [];
  const liveWhy: Why[] = [];
  const loads: number[] = [];
  let live;
  let exit: number | null = null;
  try {
    const first = await fleet.explain();
    if (!first || first.actuator !== 'local') throw new Error(`no local autoscaling on pool ${POOL}`);
    const startWall = performance.now();
    const sampler = sampleReplicas(fleet, SAMPLE_MS, (at, a) => {
      samples.push({ at: (at - startWall) * COMPRESS, desired: a.replicas.desired, ready: a.replicas.ready });
      liveWhy.push({ reason: a.decision.reason, capacity: a.capacity.unitsPerSecond / COMPRESS });
    });
    const loadTimer = setInterval(() => loads.push(loadavg()[0]!), 30_000);
    const outcomes = await replayLoad({
      baseURL: `${fleet.url}/v1`,
      model: POOL,
      requests,
      compress: COMPRESS,
      startWall,
      timeoutMs: 120_000,
    });
    // Sample until the replay's end (a minute past the last arrival), whichever is later.
    const endWall = startWall + traceMs / COMPRESS;
    if (performance.now() < endWall) await new Promise((r) => setTimeout(r, endWall - performance.now()));
    clearInterval(loadTimer);
    await sampler.stop();
    live = outcomes;
  } finally {
    exit = await fleet.stop();
  }

  // Side by side.
  const liveHours = replicaHours(samples, 0, traceMs);
  const liveMinutes = minuteAttainment(
    live.map((o) => ({
      arrivalMs: o.arrivalMs,
      firstTokenMs: o.firstTokenWallMs === undefined ? undefined : o.firstTokenWallMs * COMPRESS,
    })),
    workload.seconds / 60,
    LIVE_OBJECTIVE_MS,
  );
  const r = replay.summary;
  const replayP99 = minuteP99([replay.run], workload.seconds);
  const replayMean = (m: number, k: 'replicas' | 'ready'): number => {
    const xs = replay.run.series[k].slice(m * 60, m * 60 + 60);
    return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  };
  const liveMean = (m: number, k: 'desired' | 'ready'): number => {
    const xs = samples.filter((s) => s.at >= m * 60_000 && s.at < (m + 1) * 60_000).map((s) => s[k]);
    return xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;
  };
  console.log('');
  console.log('minute  requests  replicas replay/live  ready replay/live  p99 first token ms replay/live');
  for (let m = 0; m < workload.seconds / 60; m++) {
    const n = workload.rtRequests.slice(m * 60, m * 60 + 60).reduce((a, b) => a + b, 0);
    console.log(
      `${String(m).padStart(6)}  ${String(n).padStart(8)}  ${replayMean(m, 'replicas').toFixed(1).padStart(8)} / ${liveMean(m, 'desired').toFixed(1).padEnd(6)}  ${replayMean(m, 'ready').toFixed(1).padStart(5)} / ${liveMean(m, 'ready').toFixed(1).padEnd(6)}  ${fmt(replayP99[m]!).padStart(8)} / ${fmt(liveMinutes.p99[m]!)}`,
    );
  }

  const count = (k: 'ok' | 'refused' | 'failed') => live.filter((o) => o.outcome === k).length;
  const refusedBare = live.filter((o) => o.outcome === 'refused' && !o.retryAfter).length;
  const lags = live.map((o) => o.sendLagMs).sort((a, b) => a - b);
  const ups = startupTimes(samples).sort((a, b) => a - b);
  console.log('');
  console.log(
    `live requests: ${live.length} sent, ${count('ok')} answered, ${count('refused')} refused (429/503; ${refusedBare} without Retry-After), ${count('failed')} failed${count('failed') > 0 ? ` (first: ${live.find((o) => o.outcome === 'failed')!.error})` : ''}; send lag p50 ${lags[Math.floor(lags.length / 2)]?.toFixed(1)} ms, max ${lags.at(-1)?.toFixed(1)} ms wall`,
  );
  console.log(
    `live start-ups (desired ↑ to ready, trace s, sampled every ${(SAMPLE_MS * COMPRESS) / 1000} s): ${ups.length > 0 ? `median ${(ups[Math.floor(ups.length / 2)]! / 1000).toFixed(0)}, range ${(ups[0]! / 1000).toFixed(0)}–${(ups.at(-1)! / 1000).toFixed(0)} (n ${ups.length})` : 'none'}; policy ${policy.startupMs / 1000} s`,
  );
  console.log(
    `machine: load average during the run ${loads.map((l) => l.toFixed(2)).join(', ') || '-'}; ${uptime()}; launcher exit ${exit}`,
  );
  const replayWhy = scaler.decisions.map((d) => ({ reason: d.reason, capacity: d.capacity.unitsPerSecond }));
  console.log(`decisions by reason (share of passes), replay: ${whyLine(replayWhy)}`);
  console.log(`                                         live: ${whyLine(liveWhy)}`);
  console.log('');
  const rows: Array<[string, number, number, (x: number) => string]> = [
    ['replica-hours (trace time)', r.replicaHours, liveHours, (x) => x.toFixed(3)],
    ['minutes within the objective', r.withinShare, liveMinutes.share, pct],
  ];
  console.log(`${''.padEnd(30)} ${'replay'.padStart(10)} ${'live'.padStart(10)}  live/replay`);
  for (const [what, a, b, f] of rows) {
    console.log(`${what.padEnd(30)} ${f(a).padStart(10)} ${f(b).padStart(10)}  ${(b / a).toFixed(3)}`);
  }
  console.log(
    `  (minutes: replay ${r.minutesWithin}/${r.minutes}, live ${liveMinutes.within}/${liveMinutes.minutes}; peak replicas replay ${r.peakReplicas}, live ${Math.max(0, ...samples.map((s) => s.desired))})`,
  );
  console.log('');
  for (const [what, a, b] of rows) {
    const ok = withinTolerance(b, a, TOLERANCE);
    console.log(`${ok ? 'PASS' : 'MISS'}  ${what}: live within ${pct(TOLERANCE)} of the replay (${pct(b / a - 1)})`);
  }
  console.log(`${((Date.now() - started) / 1000).toFixed(0)} s in all`);
}

await main();
