/** `interfleet models list|get`: the trained models finished jobs registered, through the client SDK. */
import { Command } from 'commander';
import type { ApiTrainedModel } from '../client/index.ts';
import type { CliContext } from './batch-commands.ts';

/** One line per model: name, held-out accuracy (and the majority-class floor), checksum, job, URI. */
export function formatTrainedModels(models: readonly ApiTrainedModel[]): string {
  if (models.length === 0) return 'no trained model is registered';
  const rows = models.map((m) => [
    m.name,
    m.evaluation
      ? `${m.evaluation.accuracy.toFixed(3)} on ${m.evaluation.examples} (majority ${m.evaluation.majority_class_accuracy.toFixed(3)})`
      : 'not evaluated',
    m.sha256.slice(0, 12),
    m.job_id,
    m.uri,
  ]);
  const head = ['name', 'held-out accuracy', 'sha256', 'job', 'uri'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

export function modelsCommand(ctx: CliContext): Command {
  const models = new Command('models').description('trained models registered by finished training jobs');
  models
    .command('list')
    .description('every registered model: name, held-out accuracy, checksum, job and URI')
    .option('--json', "print the API's objects")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { url } = cmd.optsWithGlobals<{ url: string }>();
      const list = await ctx.client(url).trainedModels.list();
      ctx.stdout.write(opts.json ? `${JSON.stringify(list, null, 2)}\n` : `${formatTrainedModels(list)}\n`);
    });
  models
    .command('get')
    .description('one registered model')
    .argument('<name>', 'its name')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { url } = cmd.optsWithGlobals<{ url: string }>();
      ctx.stdout.write(`${JSON.stringify(await ctx.client(url).trainedModels.retrieve(name), null, 2)}\n`);
    });
  return models;
}
