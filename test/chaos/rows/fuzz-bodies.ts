/**
 * Chaos row: fuzzed requests (fast-check) over every route of a real
 * producer on the row's Redis prefix: wrong types, huge and deep values,
 * `__proto__`/`constructor` keys, bad UTF-8 bytes, odd content types, huge
 * headers. Must hold: only 4xx with a field path for bad bodies, no 5xx,
 * nothing enqueued or stored, Object.prototype untouched. The cases and the
 * judge are test/helpers/api-fuzz.ts, shared with the `npm test` fuzz test.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { queueDisplayName, queueName } from '../../../common/topology.ts';
import { fuzzCase, judge, prototypeFingerprint, send, type FuzzTargets } from '../../helpers/api-fuzz.ts';
import { startFleet } from '../../helpers/fleet.ts';
import { diffSnapshots, queueJobTotals, snapshotPrefix } from '../../helpers/redis-snapshot.ts';
import type { ChaosEnv, ChaosRow, RowResult } from '../types.ts';

const runs = { short: 500, full: 5000 } as const;

async function run(env: ChaosEnv): Promise<RowResult> {
  const fleet = await startFleet({
    yaml: 'pools:\n  - name: p\n    backend: echo\n',
    workers: 0,
    env: { REDIS_URL: env.redisUrl, INTERFLEET_PREFIX: env.prefix },
  });
  try {
    const input = join(env.workDir, 'fuzz-in.jsonl');
    await writeFile(input, '{"custom_id":"a","method":"POST","url":"/v1/infer","body":{}}\n');
    const targets: FuzzTargets = {
      pool: 'p',
      boardQueues: [queueDisplayName('rt', 'p'), queueName('rt', 'p')],
      dataUri: pathToFileURL(input).href,
      checkpointUri: `${pathToFileURL(join(env.workDir, 'fuzz-ck')).href}/`,
      bodyLimitBytes: fleet.config.producer.bodyLimitBytes,
    };
    const before = await snapshotPrefix(fleet.redis, fleet.prefix);
    const prototypeBefore = prototypeFingerprint();
    const statuses = new Map<number, number>();
    let sent = 0;
    const started = Date.now();
    const result = await fc.check(
      fc.asyncProperty(fuzzCase(targets), async (c) => {
        const answer = await send(fleet.producer.url, c);
        sent++;
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        const why = judge(c, answer);
        if (why) throw new Error(`${c.label}: ${why}`);
      }),
      { numRuns: runs[env.mode] },
    );
    const seconds = (Date.now() - started) / 1000;
    const changed = diffSnapshots(before, await snapshotPrefix(fleet.redis, fleet.prefix));
    const enqueued = [...(await queueJobTotals(fleet.redis, fleet.prefix)).values()].reduce((a, b) => a + b, 0);
    const polluted = prototypeFingerprint() !== prototypeBefore;
    const fiveHundreds = [...statuses].filter(([s]) => s >= 500 && s !== 503).reduce((a, [, n]) => a + n, 0);
    const counts = [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`);
    const failure = result.failed ? `; FAILED: ${String(result.errorInstance).slice(0, 300)}` : '';
    if (result.failed) env.log(`fuzz counterexample: ${JSON.stringify(result.counterexample)}`.slice(0, 2000));
    for (const line of changed.slice(0, 20)) env.log(`changed under the prefix: ${line}`);
    return {
      load: `${sent} fuzzed requests over 4 body routes, 13 path/query routes and the Bull Board API (${(sent / seconds).toFixed(0)} req/s)`,
      lost: enqueued,
      duplicated: 0,
      recoveryMs: null,
      holds: !result.failed && changed.length === 0 && enqueued === 0 && !polluted,
      detail:
        `status ${counts.join(' ')}; 5xx (not counting /readyz's 503 + Retry-After) ${fiveHundreds}; jobs enqueued ${enqueued}; keys changed ${changed.length}; ` +
        `Object.prototype ${polluted ? 'POLLUTED' : 'untouched'}; seed ${result.seed}${failure}`,
    };
  } finally {
    await fleet.stop();
  }
}

export const row: ChaosRow = {
  id: 'fuzz-bodies',
  fault: 'fuzzed bodies (fast-check over every route: wrong types, huge, deep, __proto__/constructor keys, bad UTF-8)',
  mustHold: 'only 4xx with a field path; nothing enqueued; no 5xx',
  run,
};
