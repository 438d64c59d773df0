/**
 * `interfleet autoscale validate <file>`: checks a config (its pools'
 * `autoscale` sections) or a bare policy offline, printing every problem
 * with its path, or each policy as the scheduler will read it. `simulate`
 * (autoscale-simulate.ts) replays a trace; `explain` (autoscale-explain.ts)
 * reads the leader's decisions.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { readPolicyFile } from '../../common/autoscale/policy-file.ts';
import type { CliContext } from './batch-commands.ts';
import { autoscaleExplainCommand } from './autoscale-explain.ts';
import { simulateCommand } from './autoscale-simulate.ts';
import { EXIT_FAILED } from './errors.ts';

export function autoscaleCommand(ctx: Pick<CliContext, 'client' | 'stdout' | 'setExitCode'>): Command {
  const autoscale = new Command('autoscale').description('autoscaling policies');
  autoscale
    .command('validate')
    .description('check a config file (pools[].autoscale) or a bare autoscale policy; every error with its path')
    .argument('<file>', 'YAML file')
    .option('--json', 'print the policies as parsed, with every default')
    .action((file: string, opts: { json?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        ctx.stdout.write(`${file}: cannot read: ${(err as Error).message}\n`);
        ctx.setExitCode(EXIT_FAILED);
        return;
      }
      const result = readPolicyFile(text, file);
      if (!result.ok) {
        ctx.stdout.write(`${file}: invalid\n${result.problems.map((p) => `  - ${p}\n`).join('')}`);
        ctx.setExitCode(EXIT_FAILED);
        return;
      }
      if (opts.json) {
        ctx.stdout.write(`${JSON.stringify(result.policies, null, 2)}\n`);
        return;
      }
      const lines = result.policies.map(({ pool, policy: p }) => {
        const cap = p.cost.maxPerHour === undefined ? 'no cost cap' : `cost cap ${p.cost.maxPerHour}/h`;
        return `  ${pool}: ${p.minReplicas}–${p.maxReplicas} replicas, start-up ${p.startupMs / 1000} s, first-token objective ${p.realtime.objectiveMs} ms at ${p.realtime.targetUtilization * 100} % utilisation, up ${p.scaleUp.maxStep}/${p.scaleUp.periodMs / 1000} s after ${p.scaleUp.stabilizationMs / 1000} s, down ${p.scaleDown.maxStep}/${p.scaleDown.periodMs / 1000} s after ${p.scaleDown.stabilizationMs / 1000} s, ${p.floors.length} floor(s), ${cap}`;
      });
      ctx.stdout.write(`${file}: valid (${result.kind})\n${lines.join('\n')}\n`);
    });
  autoscale.addCommand(simulateCommand(ctx));
  autoscale.addCommand(autoscaleExplainCommand(ctx));
  return autoscale;
}
