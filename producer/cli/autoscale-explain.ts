/**
 * `interfleet autoscale explain [pool]`: each autoscaled pool's desired and
 * ready replicas, the reason, every part of the demand and the last changes,
 * from the scheduler leader's explain record (through the client SDK).
 */
import { Command } from 'commander';
import type { SchedulerExplain } from '../../common/contracts/explain.ts';
import type { CliContext } from './batch-commands.ts';
import { autoscaleLines } from './explain-format.ts';

export function formatAutoscaleExplain(e: SchedulerExplain): string {
  const out: string[] = [];
  for (const p of e.pools) {
    out.push(`pool ${p.pool}`);
    if (p.autoscale) out.push(...autoscaleLines(p.autoscale, e.now, true));
    else {
      out.push(
        '  no autoscaling decision in the last minute: the pool has no `autoscale` policy (a fixed size), or no scheduler is leading',
      );
    }
    out.push('');
  }
  return out.join('\n');
}

export function autoscaleExplainCommand(ctx: Pick<CliContext, 'client' | 'stdout'>): Command {
  return new Command('explain')
    .description('per pool: desired and ready replicas, the reason, each part of the demand, the last decisions')
    .argument('[pool]', 'one pool (default: all)')
    .option('--json', "print the API's autoscale records")
    .action(async (pool: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { url } = cmd.optsWithGlobals<{ url: string }>();
      const explain = await ctx.client(url).explainScheduler(pool);
      const records = explain.pools.map((p) => ({ pool: p.pool, autoscale: p.autoscale }));
      ctx.stdout.write(opts.json ? `${JSON.stringify(records, null, 2)}\n` : `${formatAutoscaleExplain(explain)}\n`);
    });
}
