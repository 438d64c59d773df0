/**
 * bench:autoscale — issue 12's proof of the replay: the Azure LLM inference
 * trace 2023 (conversation, ~58 min, 19,366 requests) as real-time load plus
 * three batches with deadlines, replayed through interfleet's decide() and
 * the four baselines in one run (common/autoscale/replay/compare.ts), replica
 * start-up 120 s.
 *
 * Shaping: no time compression (the trace's own minutes, so that its ramps
 * meet the 120 s start-up at their real pace); load scaled ×3 (each request
 * stands for three, copies jittered ±30 s), so that the real-time pool spans
 * about 5 to 14 replicas at the policy's target, and 1 after the trace ends
 * (the last batch's tail). Batches: see BATCHES below (records of 512 + 128
 * tokens).
 *
 * Prints the table, the ratios vs (a) and (d), PASS/MISS per target, and
 * writes docs/autoscale-replay.svg. Env: AUTOSCALE_TRACE (path),
 * AUTOSCALE_SCALE (3), AUTOSCALE_COMPRESS (1), AUTOSCALE_CURVE_REQUESTS (4000).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { readPolicyFile } from '../../common/autoscale/policy-file.ts';
import { parseBatches } from '../../common/autoscale/replay/batches.ts';
import {
  buildWorkload,
  compareAll,
  curveFor,
  replayPolicy,
  warmReplicas,
} from '../../common/autoscale/replay/compare.ts';
import { DecideScaler } from '../../common/autoscale/replay/scalers.ts';
import { formatComparison } from '../../common/autoscale/replay/report.ts';
import { replaySvg } from '../../common/autoscale/replay/svg.ts';
import { minuteP99 } from '../../common/autoscale/replay/summary.ts';
import { loadTrace, shapeTrace } from '../../common/autoscale/replay/trace.ts';

const root = path.resolve(import.meta.dirname, '../..');
const TRACE =
  process.env.AUTOSCALE_TRACE ??
  path.resolve(root, '../shared/data/azure-llm-inference-trace-2023/AzureLLMInferenceTrace_conv.csv');
const SCALE = Number(process.env.AUTOSCALE_SCALE ?? 3);
const COMPRESS = Number(process.env.AUTOSCALE_COMPRESS ?? 1);
const CURVE_REQUESTS = Number(process.env.AUTOSCALE_CURVE_REQUESTS ?? 4000);

/** The policy replayed (what an SRE would put under pools[].autoscale). */
export const POLICY = `
minReplicas: 1
maxReplicas: 16
startupMs: 120000
realtime: { objectiveMs: 2500, targetUtilization: 0.5 }
capacityHint: 5000
cost: { pricePerReplicaHour: 4.1 }
`;

/** Batches: one open from the start, one mid-trace, one finishing after the trace ends. */
export const BATCHES = `
record: { promptTokens: 512, outputTokens: 128 }
batches:
  - { id: morning, records: 20000, arrivalS: 0, windowS: 2700 }
  - { id: midday, records: 30000, arrivalS: 1200, windowS: 2400 }
  - { id: evening, records: 25000, arrivalS: 3000, windowS: 1800 }
`;

function main(): void {
  const started = Date.now();
  const file = readPolicyFile(POLICY, 'bench policy');
  if (!file.ok) throw new Error(file.problems.join('\n'));
  const policy = file.policies[0]!.policy;
  const batches = parseBatches(BATCHES, 'bench batches');
  const trace = loadTrace(TRACE);
  const requests = shapeTrace(trace.requests, { compress: COMPRESS, scale: SCALE });
  const curve = curveFor(requests, batches, { requestsPerPoint: CURVE_REQUESTS, points: 20 });
  const curveS = (Date.now() - started) / 1000;
  const workload = buildWorkload(requests, batches, trace.startAt);
  const c = compareAll({ workload, policy, curve, pool: 'chat' });
  const objectiveMs = policy.realtime.objectiveMs;

  console.log(
    `trace: ${path.basename(TRACE)}, ${trace.requests.length.toLocaleString('en-US')} requests, compress ${COMPRESS}, scale ${SCALE} → ${requests.length.toLocaleString('en-US')} requests over ${(workload.seconds / 60).toFixed(0)} replay minutes`,
  );
  console.log(
    `engine curve (sim model, Llama-2-70B/H100, 256 seqs, 2048 tokens/step, chunked prefill; ${CURVE_REQUESTS} requests/point): real-time saturates at ${Math.round(curve.rtSaturatedUnitsPerSecond)} units/s, bulk at ${Math.round(curve.bulkSaturatedUnitsPerSecond)} units/s; ${curveS.toFixed(1)} s`,
  );
  console.log(
    `batches: ${batches.batches.map((b) => `${b.id} ${b.records} records at ${b.arrivalMs / 1000} s due ${b.deadlineMs / 1000} s`).join('; ')}`,
  );
  console.log('');
  console.log(formatComparison(c, objectiveMs));
  console.log('');

  const by = (k: string) => c.results.find((r) => r.key === k)!.summary;
  const me = by('interfleet');
  const a = by('a');
  const d = by('d');
  const fewer = (x: number, base: number): number => (base > 0 ? 1 - x / base : 0);
  const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
  console.log('ratios (interfleet replica-hours / baseline):');
  for (const r of c.results.slice(1)) {
    console.log(
      `  vs ${r.label}: ${(me.replicaHours / r.summary.replicaHours).toFixed(2)} (${pct(fewer(me.replicaHours, r.summary.replicaHours))} fewer)`,
    );
  }
  const targets: Array<[string, boolean, string]> = [
    [
      '≥ 30 % fewer replica-hours than (a)',
      fewer(me.replicaHours, a.replicaHours) >= 0.3,
      pct(fewer(me.replicaHours, a.replicaHours)),
    ],
    [
      '≥ 20 % fewer replica-hours than (d)',
      fewer(me.replicaHours, d.replicaHours) >= 0.2,
      pct(fewer(me.replicaHours, d.replicaHours)),
    ],
    [
      '≥ 99 % of minutes within the objective',
      me.withinShare >= 0.99,
      `${pct(me.withinShare)} (${me.minutesWithin}/${me.minutes})`,
    ],
    ['no batch late', me.lateBatches === 0, `${me.lateBatches} late`],
    [
      "ramp minutes over the objective ≤ half of (a)'s",
      me.rampMinutesOver <= a.rampMinutesOver / 2,
      `${me.rampMinutesOver} vs (a) ${a.rampMinutesOver} (of ${me.rampMinutes} ramp minutes)`,
    ],
  ];
  console.log('');
  console.log('targets:');
  for (const [what, ok, value] of targets) console.log(`  ${ok ? 'PASS' : 'MISS'}  ${what}: ${value}`);

  // The trade-off an SRE tunes: the same policy at other target utilisations, same workload and curve.
  console.log('');
  console.log('interfleet at other realtime.targetUtilization (replica-hours vs minutes within the objective):');
  for (const u of [0.4, 0.5, 0.6, 0.7, 0.8]) {
    const pf = readPolicyFile(POLICY.replace(/targetUtilization: [0-9.]+/, `targetUtilization: ${u}`), 'sweep');
    if (!pf.ok) throw new Error(pf.problems.join('\n'));
    const p = pf.policies[0]!.policy;
    const n0 = warmReplicas(workload, curve, policy);
    const r = replayPolicy(workload, new DecideScaler(`u${u}`, p, n0, workload.epochMs), {
      pool: 'chat',
      curve,
      objectiveMs,
      startupMs: p.startupMs,
    }).summary;
    console.log(
      `  ${u.toFixed(1)}: ${r.replicaHours.toFixed(2)} replica-h (${pct(fewer(r.replicaHours, a.replicaHours))} fewer than (a)), ${pct(r.withinShare)} of minutes within, ${r.lateBatches} late`,
    );
  }

  // Minutes within once the warm start is over: before minute ceil(startup) + 1 no replica asked for
  // can be ready, so every autoscaled policy meets the trace's opening ramp with its warm start alone.
  const warmupMinutes = Math.ceil(policy.startupMs / 60_000) + 1;
  console.log('');
  console.log(`minutes within the objective after the warm start (minute ${warmupMinutes} on):`);
  for (const r of c.results) {
    const p99 = minuteP99(r.runs, workload.seconds).slice(warmupMinutes).filter(Number.isFinite);
    const ok = p99.filter((ms) => ms <= objectiveMs).length;
    console.log(`  ${r.label.padEnd(20)} ${pct(ok / p99.length)} (${ok}/${p99.length})`);
  }

  const svg = path.join(root, 'docs/autoscale-replay.svg');
  writeFileSync(
    svg,
    replaySvg(c.results, objectiveMs, `Azure conv trace ×${SCALE} (compress ${COMPRESS}) + 3 batches, start-up 120 s`),
  );
  console.log('');
  console.log(`plot: ${path.relative(root, svg)}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
}

main();
