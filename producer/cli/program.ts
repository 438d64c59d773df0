/**
 * The `interfleet` command line: global options and the command groups.
 * Built from a context (output, client factory, clock) so that tests run it
 * in-process as well as in a child process.
 */
import { Command } from 'commander';
import { autoscaleCommand } from './autoscale-commands.ts';
import { batchCommand, type CliContext } from './batch-commands.ts';
import { modelsCommand } from './models-commands.ts';
import { schedulerCommand } from './scheduler-commands.ts';
import { trainCommand } from './train-commands.ts';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export function buildProgram(ctx: CliContext, env: NodeJS.ProcessEnv = process.env): Command {
  return new Command('interfleet')
    .description('interfleet: AI work on a fleet of GPU workers')
    .option('--url <url>', 'the producer API (env INTERFLEET_URL)', env.INTERFLEET_URL || DEFAULT_URL)
    .option(
      '--api-key <key>',
      'the API key, when the producer checks keys (env INTERFLEET_API_KEY)',
      env.INTERFLEET_API_KEY,
    )
    .addCommand(batchCommand(ctx))
    .addCommand(trainCommand(ctx))
    .addCommand(modelsCommand(ctx))
    .addCommand(schedulerCommand(ctx))
    .addCommand(autoscaleCommand(ctx))
    .showHelpAfterError();
}
