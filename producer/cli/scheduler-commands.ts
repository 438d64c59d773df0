/** `interfleet scheduler explain [pool]`: what the scheduler decided and why, through the client SDK. */
import { Command } from 'commander';
import type { CliContext } from './batch-commands.ts';
import { formatExplain } from './explain-format.ts';

export function schedulerCommand(ctx: CliContext): Command {
  const scheduler = new Command('scheduler').description("the scheduler's decisions");
  scheduler
    .command('explain')
    .description('per pool: the bulk budget and why, real-time against its objective, batch and training admission')
    .argument('[pool]', 'one pool (default: all)')
    .option('--json', "print the API's object")
    .action(async (pool: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { url } = cmd.optsWithGlobals<{ url: string }>();
      const explain = await ctx.client(url).explainScheduler(pool);
      ctx.stdout.write(opts.json ? `${JSON.stringify(explain, null, 2)}\n` : `${formatExplain(explain)}\n`);
    });
  return scheduler;
}
