/**
 * Each pool's autoscaling policy, re-read when the config file changes, so
 * that SREs tune a policy without restarting the scheduler. The file
 * (INTERFLEET_CONFIG) is stat'ed once per autoscaling pass; a new mtime or
 * size re-parses the whole config with the same loader as start-up. An
 * invalid file changes nothing: the policies in force stay, and every
 * problem is logged with its path (as `interfleet autoscale validate` prints
 * them). Only `pools[].autoscale` (and each pool's first-token objective,
 * which a policy may inherit) takes effect this way; a pool added to the file
 * needs a restart (its queues and workers are not set up), and is reported.
 *
 * The file is re-read on the first pass too: the config the process started
 * with was read before this source existed, and a write in between would
 * otherwise wait for the next one. A re-read that finds the same policies
 * (that first pass, a `touch`) changes nothing and logs nothing.
 */
import { statSync } from 'node:fs';
import { resolvePolicy, type ResolvedPolicy } from '../../common/autoscale/policy.ts';
import { ConfigError, loadConfig, type PoolConfig } from '../../common/config.ts';
import type { Logger } from '../../common/logger.ts';
import type { SchedulerMetrics } from '../metrics.ts';

export interface PoolPolicy {
  pool: PoolConfig;
  policy: ResolvedPolicy;
}

export interface PolicySourceOptions {
  pools: readonly PoolConfig[];
  env: NodeJS.ProcessEnv;
  logger: Logger;
  metrics: Pick<SchedulerMetrics, 'autoscalerPolicyReloads'>;
}

const resolveAll = (pools: readonly PoolConfig[]): PoolPolicy[] =>
  pools.flatMap((pool) => (pool.autoscale ? [{ pool, policy: resolvePolicy(pool.autoscale, pool) }] : []));

export class PolicySource {
  private policies: PoolPolicy[];
  private readonly file: string | undefined;
  private seen: string | undefined;

  constructor(private readonly opts: PolicySourceOptions) {
    this.policies = resolveAll(opts.pools);
    this.file = opts.env.INTERFLEET_CONFIG || undefined;
    // Not the file's fingerprint now: the policies above were read from it earlier (see the header).
    this.seen = this.file ? 'not yet read here' : undefined;
  }

  /** The policies in force, after re-reading the file if it changed. */
  current(): readonly PoolPolicy[] {
    const now = this.fingerprint();
    if (now !== this.seen) {
      this.seen = now;
      this.reload();
    }
    return this.policies;
  }

  private fingerprint(): string | undefined {
    if (!this.file) return undefined;
    try {
      const st = statSync(this.file);
      return `${st.mtimeMs}:${st.size}`;
    } catch {
      return 'missing';
    }
  }

  private reload(): void {
    const { logger, metrics } = this.opts;
    let pools: PoolConfig[];
    try {
      pools = loadConfig(this.opts.env).pools;
    } catch (err) {
      const problems = err instanceof ConfigError ? err.issues : [(err as Error).message];
      metrics.autoscalerPolicyReloads.inc({ outcome: 'invalid' });
      logger.error({ file: this.file, problems }, 'config file changed but is invalid; autoscaling policies kept');
      return;
    }
    const known = new Set(this.opts.pools.map((p) => p.name));
    const added = pools.filter((p) => !known.has(p.name)).map((p) => p.name);
    if (added.length > 0) logger.warn({ pools: added }, 'config file adds pools; they need a restart to be served');
    const next = resolveAll(pools.filter((p) => known.has(p.name)));
    if (JSON.stringify(next) === JSON.stringify(this.policies)) return;
    metrics.autoscalerPolicyReloads.inc({ outcome: 'applied' });
    logger.info(
      { file: this.file, autoscaled: next.map((p) => p.pool.name), was: this.policies.map((p) => p.pool.name) },
      'config file changed; autoscaling policies re-read',
    );
    this.policies = next;
  }
}
