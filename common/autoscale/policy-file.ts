/**
 * Reads the YAML an SRE hands to `interfleet autoscale validate` (and to the
 * replay's `--policy`): either a whole interfleet config, whose pools'
 * `autoscale` sections are the policies, or one bare policy mapping. Every
 * problem comes back at once with its path, as the config loader reports
 * them, so a file that validates is a file the scheduler accepts.
 */
import { parse as parseYaml } from 'yaml';
import { ConfigError, parseConfig } from '../config.ts';
import { autoscalePolicySchema, resolvePolicy, type ResolvedPolicy } from './policy.ts';

export type PolicyFile =
  | { ok: true; kind: 'config' | 'policy'; policies: Array<{ pool: string; policy: ResolvedPolicy }> }
  | { ok: false; problems: string[] };

/** A bare policy names none of the config's top-level sections. */
const configKeys = [
  'pools',
  'redis',
  'producer',
  'worker',
  'scheduler',
  'batch',
  'launcher',
  'autoscaler',
  'storage',
  'log',
];

export function readPolicyFile(text: string, source: string): PolicyFile {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    return { ok: false, problems: [`${source}: not YAML: ${(err as Error).message}`] };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return { ok: false, problems: [`${source}: expected a YAML mapping at the top level`] };
  }
  if (Object.keys(doc).some((k) => configKeys.includes(k))) {
    try {
      // The file alone: the environment must not make a broken file pass (or a good one fail).
      const config = parseConfig({}, text, source);
      const policies = config.pools.flatMap((p) =>
        p.autoscale ? [{ pool: p.name, policy: resolvePolicy(p.autoscale, p) }] : [],
      );
      if (policies.length === 0) return { ok: false, problems: [`${source}: no pool has an autoscale section`] };
      return { ok: true, kind: 'config', policies };
    } catch (err) {
      if (err instanceof ConfigError) return { ok: false, problems: err.issues };
      throw err;
    }
  }
  const parsed = autoscalePolicySchema.safeParse(doc);
  if (!parsed.success) {
    return { ok: false, problems: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`) };
  }
  // A bare policy has no pool: its objective defaults to the pool default's (firstTokenObjectiveMs 1000).
  return {
    ok: true,
    kind: 'policy',
    policies: [{ pool: '(policy)', policy: resolvePolicy(parsed.data, { firstTokenObjectiveMs: 1000 }) }],
  };
}
