/**
 * `interfleet autoscale simulate --trace <csv> --policy <yaml>`: replays a
 * real-time trace (and optional batches with deadlines) through the same
 * decide() the scheduler runs, with the pool model of
 * common/autoscale/replay/ (start-up time; per-replica behaviour from the sim
 * backend's engine model), beside the four baselines of issue 12, and prints
 * replica-hours, cost, the share of minutes within the objective, ramp
 * minutes over it and batch deadline misses; `--svg` writes the plot,
 * `--json` prints the summaries instead of the table. A progress bar goes to
 * stderr when it is a terminal. Offline: no Redis, no API.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { z } from 'zod';
import { readPolicyFile } from '../../common/autoscale/policy-file.ts';
import { BatchFileError, DEFAULT_RECORD, parseBatches, type BatchSet } from '../../common/autoscale/replay/batches.ts';
import { buildWorkload, compareAll, curveFor, DEFAULT_EPOCH_MS } from '../../common/autoscale/replay/compare.ts';
import { formatComparison } from '../../common/autoscale/replay/report.ts';
import { replaySvg } from '../../common/autoscale/replay/svg.ts';
import { loadTrace, shapeTrace, TraceError } from '../../common/autoscale/replay/trace.ts';
import type { CliContext, Output } from './batch-commands.ts';
import { EXIT_FAILED } from './errors.ts';
import { ProgressLine } from './progress.ts';

const positive = (what: string) =>
  z.coerce.number({ error: `${what} must be a number` }).gt(0, `${what} must be above 0`);

const optionsSchema = z.object({
  trace: z.string().min(1),
  policy: z.string().min(1),
  pool: z.string().optional(),
  batches: z.string().optional(),
  compress: positive('--compress').max(1000, '--compress must be at most 1000').default(1),
  scale: positive('--scale').max(1000, '--scale must be at most 1000').default(1),
  svg: z.string().optional(),
  json: z.boolean().optional(),
  curveRequests: z.coerce
    .number({ error: '--curve-requests must be a number' })
    .int('--curve-requests must be a whole number')
    .min(100, '--curve-requests must be at least 100')
    .max(100_000, '--curve-requests must be at most 100000')
    .default(2000),
});
type SimulateOptions = z.input<typeof optionsSchema>;

export type SimulateContext = Pick<CliContext, 'stdout' | 'setExitCode'> & { stderr?: Output };

export function simulateCommand(ctx: SimulateContext): Command {
  return new Command('simulate')
    .description(
      'replay a trace (and batches with deadlines) through decide() and the KEDA/HPA, static and dedicated-pool baselines',
    )
    .requiredOption('--trace <csv>', 'Azure LLM inference trace CSV, or seconds,promptTokens,outputTokens')
    .requiredOption('--policy <yaml>', 'a config (pools[].autoscale) or a bare autoscale policy')
    .option('--pool <name>', 'the pool whose policy to replay (default: the first with one)')
    .option('--batches <file>', 'YAML or JSON: batches with records, arrivalS and windowS')
    .option('--compress <x>', 'time compression: arrivals at t / x (rates × x)')
    .option('--scale <k>', 'load scaling: each request stands for k (copies jittered ±30 s)')
    .option('--curve-requests <n>', 'requests per point of the engine curve (more: smoother, slower)')
    .option('--svg <out.svg>', 'write the plot (load, desired and ready replicas, p99 vs objective)')
    .option('--json', 'print the summaries as JSON')
    .action((raw: SimulateOptions) => {
      const fail = (lines: string[]): void => {
        ctx.stdout.write(`${lines.join('\n')}\n`);
        ctx.setExitCode(EXIT_FAILED);
      };
      const parsed = optionsSchema.safeParse(raw);
      if (!parsed.success) {
        fail(['invalid options:', ...parsed.error.issues.map((i) => `  - ${i.path.join('.')}: ${i.message}`)]);
        return;
      }
      const o = parsed.data;
      let policyText: string;
      try {
        policyText = readFileSync(o.policy, 'utf8');
      } catch (err) {
        fail([`${o.policy}: cannot read: ${(err as Error).message}`]);
        return;
      }
      const file = readPolicyFile(policyText, o.policy);
      if (!file.ok) {
        fail([`${o.policy}: invalid`, ...file.problems.map((p) => `  - ${p}`)]);
        return;
      }
      const chosen = o.pool === undefined ? file.policies[0] : file.policies.find((p) => p.pool === o.pool);
      if (!chosen) {
        fail([
          `${o.policy}: no autoscale policy for pool "${o.pool}" (has: ${file.policies.map((p) => p.pool).join(', ')})`,
        ]);
        return;
      }
      let trace;
      let batchSet: BatchSet = { record: { ...DEFAULT_RECORD }, batches: [] };
      try {
        trace = loadTrace(o.trace);
        if (o.batches !== undefined) {
          let text: string;
          try {
            text = readFileSync(o.batches, 'utf8');
          } catch (err) {
            throw new BatchFileError([`${o.batches}: cannot read: ${(err as Error).message}`]);
          }
          batchSet = parseBatches(text, o.batches);
        }
      } catch (err) {
        if (err instanceof TraceError || err instanceof BatchFileError) {
          fail([err.message]);
          return;
        }
        throw err;
      }
      const { policy, pool } = chosen;
      const requests = shapeTrace(trace.requests, { compress: o.compress, scale: o.scale });
      const stderr = ctx.stderr ?? process.stderr;
      const bar = stderr.isTTY ? new ProgressLine(stderr) : undefined;
      bar?.show('building the engine curve (sim model)…');
      const curve = curveFor(requests, batchSet, { requestsPerPoint: o.curveRequests });
      const workload = buildWorkload(requests, batchSet, trace.startAt > 0 ? trace.startAt : DEFAULT_EPOCH_MS);
      const comparison = compareAll({
        workload,
        policy,
        curve,
        pool,
        onProgress: (done, what) => {
          if (!bar) return;
          const pct = Math.floor(done * 100);
          const filled = Math.round(done * 30);
          bar.show(
            `[${'#'.repeat(filled)}${' '.repeat(30 - filled)}] ${String(pct).padStart(3)} %  ${what}`,
            `${pct} ${what}`,
          );
        },
      });
      bar?.done();
      const objectiveMs = policy.realtime.objectiveMs;
      if (o.svg !== undefined) {
        const title = `autoscale replay: ${o.trace.split('/').at(-1)} (compress ${o.compress}, scale ${o.scale}), start-up ${policy.startupMs / 1000} s`;
        writeFileSync(o.svg, replaySvg(comparison.results, objectiveMs, title));
      }
      if (o.json) {
        ctx.stdout.write(
          `${JSON.stringify(
            {
              pool,
              objectiveMs,
              targets: comparison.targets,
              initialReplicas: comparison.initialReplicas,
              staticReplicas: comparison.staticReplicas,
              curve: {
                rtSaturatedUnitsPerSecond: curve.rtSaturatedUnitsPerSecond,
                bulkSaturatedUnitsPerSecond: curve.bulkSaturatedUnitsPerSecond,
                unitsPerRequest: curve.unitsPerRequest,
              },
              results: comparison.results.map((r) => ({ key: r.key, ...r.summary })),
            },
            null,
            2,
          )}\n`,
        );
        return;
      }
      const hours = workload.seconds / 3600;
      ctx.stdout.write(
        `${pool}: ${requests.length.toLocaleString('en-US')} real-time requests and ${batchSet.batches.length} batches over ${(hours * 60).toFixed(0)} replay minutes; replica capacity ${Math.round(curve.rtSaturatedUnitsPerSecond)} real-time units/s saturated (sim model)\n${formatComparison(comparison, objectiveMs)}\n${o.svg === undefined ? '' : `plot: ${o.svg}\n`}`,
      );
    });
}
