import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readPolicyFile } from '../../../common/autoscale/policy-file.ts';
import { buildProgram } from '../../../producer/cli/program.ts';

const goodConfig = `
pools:
  - name: chat
    firstTokenObjectiveMs: 800
    autoscale:
      minReplicas: 2
      maxReplicas: 10
      floors: [{ name: office, cron: '0 9 * * 1-5', durationMs: 28800000, minReplicas: 4 }]
  - name: fixed
`;

describe('readPolicyFile', () => {
  it('reads the autoscale sections of a config, objective from the pool', () => {
    const r = readPolicyFile(goodConfig, 'fleet.yaml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.kind).toBe('config');
    expect(r.policies.map((p) => p.pool)).toEqual(['chat']);
    expect(r.policies[0]!.policy).toMatchObject({ minReplicas: 2, maxReplicas: 10, realtime: { objectiveMs: 800 } });
  });

  it.each([
    [
      'a config: every problem with its path',
      `pools:\n  - name: chat\n    autoscale: { minReplicas: 5, maxReplicas: 3, scaleUp: { maxStep: 0 }, floors: [{ name: f, cron: 'nope', durationMs: 1, minReplicas: 1 }] }\n`,
      ['pools.0.autoscale.scaleUp.maxStep', 'pools.0.autoscale.floors.0.cron', 'pools.0.autoscale.minReplicas'],
    ],
    ['a bare policy', `minReplicas: -1\ncost: { maxPerHour: 10 }\n`, ['minReplicas', 'cost.pricePerReplicaHour']],
    ['a config without any policy', `pools: [{ name: chat }]\n`, ['no pool has an autoscale section']],
    ['not a mapping', `- 1\n`, ['expected a YAML mapping']],
  ])('%s', (_what, text, expected) => {
    const r = readPolicyFile(text, 'x.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    for (const e of expected) expect(r.problems.join('\n')).toContain(e);
    expect(r.problems.length).toBeGreaterThanOrEqual(expected.length);
  });

  it('reads a bare policy with its defaults', () => {
    const r = readPolicyFile('maxReplicas: 6\nstartupMs: 90000\n', 'p.yaml');
    expect(r).toMatchObject({
      ok: true,
      kind: 'policy',
      policies: [{ policy: { maxReplicas: 6, startupMs: 90000, minReplicas: 1 } }],
    });
  });
});

describe('interfleet autoscale validate', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  async function cli(text: string): Promise<{ out: string; code: number | undefined }> {
    const dir = mkdtempSync(path.join(tmpdir(), 'autoscale-validate-'));
    dirs.push(dir);
    const file = path.join(dir, 'policy.yaml');
    writeFileSync(file, text);
    let out = '';
    let code: number | undefined;
    const program = buildProgram(
      {
        stdout: { write: (s: string) => ((out += s), true) },
        client: () => {
          throw new Error('validate must not call the API');
        },
        now: Date.now,
        setExitCode: (c) => (code = c),
      },
      {},
    );
    await program.parseAsync(['node', 'interfleet', 'autoscale', 'validate', file]);
    return { out, code };
  }

  it('says valid and summarises each policy', async () => {
    const { out, code } = await cli(goodConfig);
    expect(code).toBeUndefined();
    expect(out).toContain('valid (config)');
    expect(out).toMatch(/chat: 2–10 replicas, start-up 120 s, first-token objective 800 ms/);
  });

  it('lists every problem and fails', async () => {
    const { out, code } = await cli('minReplicas: 9\nmaxReplicas: 2\nscaleDown: { periodMs: 0 }\n');
    expect(code).toBe(1);
    expect(out).toContain('invalid');
    expect(out).toContain('scaleDown.periodMs');
    expect(out).toContain('minReplicas (9) is above maxReplicas (2)');
  });
});
