/**
 * `interfleet train …`: submit a training job from a YAML or JSON file (the
 * API's snake_case fields, checked here with the API's own schema first) and
 * follow it round by round, show one, print its ranks' logs, cancel one.
 * Every command goes through the typed client SDK (`client.training`), as
 * batch-commands.ts does for batches.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { parse as parseYaml } from 'yaml';
import {
  maxGangSize,
  maxRounds,
  trainingJobBodySchema,
  type TrainingJobParams,
} from '../../common/contracts/training.ts';
import type { ApiTrainingJob, ApiTrainingLogs } from '../client/training-wire.ts';
import type { CliContext } from './batch-commands.ts';
import { EXIT_BATCH_NOT_COMPLETED } from './errors.ts';
import { formatDuration, ProgressLine } from './progress.ts';

/** Exit status of `train submit` when the job ended failed or cancelled: the batch CLI's "did not complete". */
export const EXIT_TRAINING_NOT_SUCCEEDED = EXIT_BATCH_NOT_COMPLETED;

function intIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

/**
 * Reads a job definition (`.json`: JSON; anything else: YAML, which JSON is
 * also) and checks it with the API's schema; every problem, with its field,
 * in one error.
 */
export async function readTrainingJobFile(file: string): Promise<TrainingJobParams> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let data: unknown;
  try {
    data = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const format = extname(file).toLowerCase() === '.json' ? 'JSON' : 'YAML';
    throw new Error(`${file} is not valid ${format}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  const parsed = trainingJobBodySchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) =>
      i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message,
    );
    throw new Error(`${file} is not a valid training job:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  // What the file says, not the parsed copy: the API fills in its own defaults.
  return data as TrainingJobParams;
}

/** The ranks of one round: how many are in each state, and how many have not started. */
export function rankCounts(job: ApiTrainingJob, round: number) {
  const ranks = job.ranks.filter((r) => r.round === round);
  const of = (s: string): number => ranks.filter((r) => r.status === s).length;
  return {
    running: of('running'),
    succeeded: of('succeeded'),
    failed: of('failed'),
    pending: Math.max(0, job.workers - ranks.length),
  };
}

/** The mean `loss` of the latest round whose ranks reported one (ranks report metrics as they end). */
export function meanLoss(job: ApiTrainingJob): { round: number; loss: number } | undefined {
  for (let round = job.round; round >= 1; round--) {
    const losses = job.ranks
      .filter((r) => r.round === round && r.metrics.loss !== undefined)
      .map((r) => r.metrics.loss!);
    if (losses.length > 0) return { round, loss: losses.reduce((a, b) => a + b, 0) / losses.length };
  }
  return undefined;
}

const metric = (n: number): string => String(Number(n.toPrecision(4)));

/** Why the scheduler holds a job, in words after its code (scheduler/gang-admission.ts GangHoldReason). */
const holdText: Record<string, (n: number) => string> = {
  exceeds_quota: (n) => `${n} ranks exceed the pool's training quota`,
  no_training_slots: () => "the pool's ready workers have no training slot",
  exceeds_pool_slots: (n) => `${n} ranks need more training slots than all the pool's ready workers have`,
  waiting_for_slots: (n) => `${n} ranks need more training slots than are free now`,
  reserved_for_earlier_gang: () => 'behind an earlier gang waiting for slots',
};
/** `exceeds_pool_slots (3 ranks need more training slots than ...; none started)` */
const waitingText = (job: ApiTrainingJob): string => {
  const code = job.waiting_reason ?? '';
  const text = holdText[code];
  return text === undefined ? code : `${code} (${text(job.workers)}; none started)`;
};

/** What changed between polls (elapsed time aside): on a pipe, a line is printed only then. */
function progressKey(job: ApiTrainingJob): string {
  const c = rankCounts(job, job.round);
  return [job.status, job.round, c.running, c.succeeded, c.failed, meanLoss(job)?.loss, job.waiting_reason].join(' ');
}

/** `running    round 1/3  ranks: 1 running, 1 succeeded, 0 failed  loss 0.4167  elapsed 12s` */
export function formatTrainingProgress(job: ApiTrainingJob, elapsedMs: number): string {
  const parts = [job.status.padEnd(10), `round ${job.round}/${job.rounds}`];
  const c = rankCounts(job, job.round);
  if (job.status === 'queued' && c.running + c.succeeded + c.failed === 0) {
    if (job.waiting_reason) parts.push(`waiting: ${waitingText(job)}`);
  } else {
    const counts = `ranks: ${c.running} running, ${c.succeeded} succeeded, ${c.failed} failed`;
    parts.push(c.pending > 0 && job.status === 'running' ? `${counts}, ${c.pending} pending` : counts);
  }
  const loss = meanLoss(job);
  if (loss) parts.push(`loss ${metric(loss.loss)}${loss.round === job.round ? '' : ` (round ${loss.round})`}`);
  parts.push(`elapsed ${formatDuration(elapsedMs)}`);
  return parts.join('  ');
}

const iso = (seconds: number | null): string => (seconds === null ? '-' : new Date(seconds * 1000).toISOString());
const arg = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a));

/** Several lines describing one job, then the ranks of its latest round. */
export function formatTrainingJob(job: ApiTrainingJob): string {
  const rows: Array<[string, string]> = [
    ['status', `${job.status}, round ${job.round} of ${job.rounds}`],
    ['pool', `${job.pool} (tenant ${job.tenant}, priority ${job.priority})`],
    [
      'gang',
      job.mode === 'gang'
        ? `${job.workers} rank(s), gang mode, restarted ${job.restarts} of at most ${job.max_restarts} time(s)`
        : `${job.workers} rank(s), ${job.mode} mode, up to ${job.max_attempts} attempt(s) each`,
    ],
    ['command', [job.command, ...job.args].map(arg).join(' ')],
    ...(job.reduce
      ? [['reduce', [job.reduce.command, ...job.reduce.args].map(arg).join(' ')] as [string, string]]
      : []),
    ['data', `${job.data_uri.join(', ')} (shard ${job.shard})`],
  ];
  if (job.init_uri !== null) rows.push(['init', job.init_uri]);
  rows.push(['checkpoint', job.checkpoint_uri], ['created', iso(job.created_at)]);
  if (job.deadline !== null) rows.push(['deadline', iso(job.deadline)]);
  if (job.admitted_at !== null) rows.push(['admitted', iso(job.admitted_at)]);
  if (job.ended_at !== null) rows.push(['ended', iso(job.ended_at)]);
  if (job.waiting_reason) rows.push(['waiting', waitingText(job)]);
  if (job.restart_reason) rows.push(['restarted', job.restart_reason]);
  if (job.error) rows.push(['error', job.error]);
  const model = job.models.at(-1);
  if (model) rows.push(['model', `${model.uri} (round ${model.round})`]);
  const lines = [job.id, ...rows.map(([k, v]) => `  ${k.padEnd(10)} ${v}`)];
  const round = job.ranks.at(-1)?.round;
  if (round !== undefined) {
    lines.push(`  round ${round} ranks`);
    for (const r of job.ranks.filter((x) => x.round === round)) {
      const metrics = Object.entries(r.metrics).map(([k, v]) => `${k}=${metric(v)}`);
      const exit = r.exit_code === null ? [] : [`exit ${r.exit_code}`];
      lines.push(`    ${[String(r.rank).padStart(3), r.status.padEnd(9), r.worker, ...exit, ...metrics].join('  ')}`);
      if (r.reason) lines.push(`      ! ${r.reason}`);
    }
  }
  return lines.join('\n');
}

/** `==> round 1, rank 0: succeeded, 2 lines <==` and its lines, rank after rank (as tail prints several files). */
export function formatTrainingLogs(logs: ApiTrainingLogs): string {
  return logs.ranks
    .map((r) => {
      const count = r.total_lines > r.lines.length ? `last ${r.lines.length} of ${r.total_lines}` : `${r.total_lines}`;
      const header = `==> round ${logs.round}, rank ${r.rank}: ${r.status ?? 'not started'}, ${count} line(s) <==`;
      return [header, ...r.lines].join('\n');
    })
    .join('\n\n');
}

interface SubmitOptions {
  /** Undefined unless --wait or --no-wait was given: waiting is the default. */
  wait?: boolean;
  poll: number;
  json?: boolean;
}

export function trainCommand(ctx: CliContext): Command {
  const print = (text: string): unknown => ctx.stdout.write(`${text}\n`);
  const urlOf = (cmd: Command): string => cmd.optsWithGlobals<{ url: string }>().url;
  const show = (job: ApiTrainingJob, json: boolean | undefined): unknown =>
    print(json ? JSON.stringify(job, null, 2) : formatTrainingJob(job));

  const train = new Command('train').description('submit, follow, inspect and cancel training jobs');

  train
    .command('submit')
    .description('submit a training job from a YAML or JSON file and, unless --no-wait, follow it until it ends')
    .argument('<job-file>', 'job.yaml or job.json: the fields of POST /v1/training/jobs (pool, command, workers, …)')
    .option('--wait', 'follow the job round by round until it ends (the default)')
    .option('--no-wait', 'print the job id and return at once')
    .option('--poll <ms>', 'time between progress checks', intIn('poll', 10, 3_600_000), 2000)
    .option('--json', 'print the final job as JSON')
    .addHelpText(
      'after',
      '\nExit status: 0 succeeded (or submitted, with --no-wait); 1 error (an invalid file, the API refused it); 2 failed or cancelled.',
    )
    .action(async (file: string, opts: SubmitOptions, cmd: Command) => {
      const body = await readTrainingJobFile(file);
      const client = ctx.client(urlOf(cmd));
      const created = await client.training.create(body);
      print(created.id);
      if (opts.wait === false) return;
      const started = ctx.now();
      const line = new ProgressLine(ctx.stdout);
      let final: ApiTrainingJob;
      try {
        final = await client.training.wait(created.id, {
          intervalMs: opts.poll,
          onProgress(job) {
            line.show(formatTrainingProgress(job, ctx.now() - started), progressKey(job));
          },
        });
      } finally {
        line.done();
      }
      show(final, opts.json);
      if (final.status !== 'succeeded') ctx.setExitCode(EXIT_TRAINING_NOT_SUCCEEDED);
    });

  train
    .command('status')
    .description('show a training job: its status, round, and the ranks of its latest round')
    .argument('<job-id>')
    .option('--json', 'print the job as JSON (every round)')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      show(await ctx.client(urlOf(cmd)).training.retrieve(id), opts.json);
    });

  train
    .command('logs')
    .description("print the ranks' log lines (their metric lines) of the round running, or the last that ran")
    .argument('<job-id>')
    .option('--round <n>', 'this round instead', intIn('round', 1, maxRounds))
    .option('--rank <k>', 'this rank only (default: every rank)', intIn('rank', 0, maxGangSize - 1))
    .option('--tail <n>', 'the last n lines of each rank (1-10000)', intIn('tail', 1, 10_000), 100)
    .option('--json', "print the API's object")
    .action(async (id: string, opts: { round?: number; rank?: number; tail: number; json?: boolean }, cmd: Command) => {
      const { json, ...query } = opts;
      const logs = await ctx.client(urlOf(cmd)).training.logs(id, query);
      print(json ? JSON.stringify(logs, null, 2) : formatTrainingLogs(logs));
    });

  train
    .command('cancel')
    .description('cancel a queued or running training job: its running ranks are stopped')
    .argument('<job-id>')
    .option('--json', 'print the job as JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const job = await ctx.client(urlOf(cmd)).training.cancel(id);
      print(opts.json ? JSON.stringify(job, null, 2) : `${job.id} ${job.status}`);
    });

  return train;
}
