/**
 * `interfleet batch …`: submit (and follow) a batch, show one, cancel one,
 * list them. Every command goes through the typed client SDK, so the CLI
 * sees exactly what other services see.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { batchEndpoints } from '../../common/contracts/batch.ts';
import type { ApiBatch, BatchCreateParams, InterfleetClient } from '../client/index.ts';
import { EXIT_BATCH_NOT_COMPLETED } from './errors.ts';
import { formatBatch, formatBatchList } from './format.ts';
import { formatProgress, ProgressLine, ProgressMeter } from './progress.ts';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface CliContext {
  stdout: Output;
  /** A client for the API at `url` (the global --url). */
  client(url: string): InterfleetClient;
  now(): number;
  setExitCode(code: number): void;
}

function intIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function metadataPair(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

interface SubmitOptions {
  model?: string;
  endpoint: BatchCreateParams['endpoint'];
  window: string;
  output?: string;
  priority?: number;
  tenant?: string;
  metadata?: Record<string, string>;
  wait: boolean;
  poll: number;
  json?: boolean;
}

export function batchCommand(ctx: CliContext): Command {
  const print = (text: string): unknown => ctx.stdout.write(`${text}\n`);
  const urlOf = (cmd: Command): string => cmd.optsWithGlobals<{ url: string }>().url;
  const show = (batch: ApiBatch, json: boolean | undefined): unknown =>
    print(json ? JSON.stringify(batch, null, 2) : formatBatch(batch));

  const batch = new Command('batch').description('submit, follow, cancel and list batches (OpenAI Batch API)');

  batch
    .command('submit')
    .description('submit a JSONL input and, unless --no-wait, follow it until it ends')
    .argument('<input-uri>', 'JSONL object or prefix: file:///…, gs://bucket/…, oci://bucket@namespace/…')
    .addOption(
      new Option('--endpoint <endpoint>', 'what each line calls').choices(batchEndpoints).makeOptionMandatory(),
    )
    .option('--model <pool>', 'the pool that runs it (default: the first configured pool)')
    .option('--window <duration>', 'completion window: 30s, 90m, 24h, 7d', '24h')
    .option('--output <prefix-uri>', 'where output, errors and manifest go (default: beside the input)')
    .option('--priority <n>', 'priority 0-9', intIn('priority', 0, 9))
    .option('--tenant <name>', 'tenant for fair share')
    .option('--metadata <key=value...>', 'metadata pairs (repeatable)', metadataPair)
    .option('--no-wait', 'print the batch id and return at once')
    .option('--poll <ms>', 'time between progress checks', intIn('poll', 10, 3_600_000), 2000)
    .option('--json', 'print the final batch as JSON')
    .addHelpText(
      'after',
      '\nExit status: 0 completed (or submitted, with --no-wait); 1 error; 2 failed, expired or cancelled.',
    )
    .action(async (input: string, opts: SubmitOptions, cmd: Command) => {
      const client = ctx.client(urlOf(cmd));
      const created = await client.createBatch({
        input_file: input,
        endpoint: opts.endpoint,
        completion_window: opts.window,
        ...(opts.model !== undefined && { model: opts.model }),
        ...(opts.output !== undefined && { output_location: opts.output }),
        ...(opts.priority !== undefined && { priority: opts.priority }),
        ...(opts.tenant !== undefined && { tenant: opts.tenant }),
        ...(opts.metadata !== undefined && { metadata: opts.metadata }),
      });
      print(created.id);
      if (!opts.wait) return;
      const meter = new ProgressMeter();
      const line = new ProgressLine(ctx.stdout);
      let final: ApiBatch;
      try {
        final = await client.waitForBatch(created.id, {
          intervalMs: opts.poll,
          onProgress(b) {
            const p = meter.update(b, ctx.now());
            // On a pipe, print when the batch moved, not every poll.
            line.show(formatProgress(p), `${p.status} ${p.linesDone} ${p.total}`);
          },
        });
      } finally {
        line.done();
      }
      show(final, opts.json);
      if (final.status !== 'completed') ctx.setExitCode(EXIT_BATCH_NOT_COMPLETED);
    });

  batch
    .command('status')
    .description('show a batch')
    .argument('<batch-id>')
    .option('--json', 'print the Batch object as JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      show(await ctx.client(urlOf(cmd)).getBatch(id), opts.json);
    });

  batch
    .command('cancel')
    .description('cancel a batch: what ran is kept, the rest is reported as not run')
    .argument('<batch-id>')
    .option('--json', 'print the Batch object as JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const b = await ctx.client(urlOf(cmd)).cancelBatch(id);
      print(opts.json ? JSON.stringify(b, null, 2) : `${b.id} ${b.status}`);
    });

  batch
    .command('list')
    .description('list batches, newest first')
    .option('--limit <n>', 'batches per page, 1-100', intIn('limit', 1, 100), 20)
    .option('--after <batch-id>', 'start after this batch (the last id of the previous page)')
    .option('--json', 'print the list page as JSON')
    .action(async (opts: { limit: number; after?: string; json?: boolean }, cmd: Command) => {
      const page = await ctx.client(urlOf(cmd)).listBatches({
        limit: opts.limit,
        ...(opts.after !== undefined && { after: opts.after }),
      });
      if (opts.json) print(JSON.stringify(page, null, 2));
      else print(formatBatchList(page, (after) => `interfleet batch list --limit ${opts.limit} --after ${after}`));
    });

  return batch;
}
