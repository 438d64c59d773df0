/**
 * PolicySource (scheduler/autoscaler/policy-source.ts) over a real config file: the policies served
 * follow the file's autoscale sections as it changes, an invalid file changes nothing, and a pool the
 * running scheduler does not know is reported, not served.
 */
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../common/config.ts';
import { createSchedulerMetrics } from '../../../scheduler/metrics.ts';
import { PolicySource } from '../../../scheduler/autoscaler/policy-source.ts';

const config = (chatMax: number, extra = '') => `
pools:
  - name: chat
    firstTokenObjectiveMs: 800
    autoscale:
      minReplicas: 1
      maxReplicas: ${chatMax}
  - name: fixed
${extra}`;

interface Logged {
  level: number;
  msg: string;
  [key: string]: unknown;
}

let dir: string;
let file: string;
/** Seconds added to each write's mtime, so every rewrite has a new fingerprint whatever the clock's granularity. */
let tick = 0;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'interfleet-policy-source-'));
  file = path.join(dir, 'interfleet.yaml');
  tick = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(text: string): void {
  writeFileSync(file, text);
  const at = new Date(Date.now() + ++tick * 10_000);
  utimesSync(file, at, at);
}

function setup(text = config(4)) {
  write(text);
  const env = { INTERFLEET_CONFIG: file, LOG_LEVEL: 'silent' };
  const logs: Logged[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as Logged) });
  const metrics = createSchedulerMetrics({});
  const source = new PolicySource({ pools: loadConfig(env).pools, env, logger, metrics });
  const reloads = async (outcome: 'applied' | 'invalid'): Promise<number> =>
    (await metrics.autoscalerPolicyReloads.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  return { source, logs, reloads };
}

const summary = (source: PolicySource) =>
  source
    .current()
    .map((p) => ({ pool: p.pool.name, max: p.policy.maxReplicas, objective: p.policy.realtime.objectiveMs }));

describe('PolicySource', () => {
  it('serves the given pools’ policies, resolved, and does not re-read an unchanged file', async () => {
    const { source, logs, reloads } = setup();
    expect(summary(source)).toEqual([{ pool: 'chat', max: 4, objective: 800 }]);
    expect(source.current()).toBe(source.current());
    expect(await reloads('applied')).toBe(0);
    expect(await reloads('invalid')).toBe(0);
    expect(logs).toEqual([]);
  });

  it('catches a change made between the start-up config read and the source being made', async () => {
    write(config(4));
    const env = { INTERFLEET_CONFIG: file, LOG_LEVEL: 'silent' };
    const pools = loadConfig(env).pools; // the scheduler's start-up read
    write(config(7)); // an SRE's edit lands before the autoscaler starts
    const metrics = createSchedulerMetrics({});
    const source = new PolicySource({ pools, env, logger: pino({ level: 'silent' }), metrics });
    expect(summary(source)).toEqual([{ pool: 'chat', max: 7, objective: 800 }]);
  });

  it('serves the new policy after the file changes, once, and counts the reload as applied', async () => {
    const { source, logs, reloads } = setup();
    const before = source.current();
    write(config(9));
    expect(summary(source)).toEqual([{ pool: 'chat', max: 9, objective: 800 }]);
    expect(source.current()).not.toBe(before);
    expect(source.current()[0]!.policy).toMatchObject({ minReplicas: 1, maxReplicas: 9 });
    expect(await reloads('applied')).toBe(1);
    // Asked again without a change: not re-read.
    source.current();
    expect(await reloads('applied')).toBe(1);
    expect(logs.filter((l) => l.msg.includes('re-read'))).toEqual([
      expect.objectContaining({ autoscaled: ['chat'], was: ['chat'], file }),
    ]);
  });

  it('notices a change with the same size and mtime granularity (fingerprint is mtime and size)', async () => {
    const { source, reloads } = setup(config(4));
    // Same length, new mtime: re-read.
    write(config(5));
    expect(statSync(file).size).toBe(config(4).length);
    expect(summary(source)[0]!.max).toBe(5);
    // Same mtime as before, new size: re-read too.
    const { mtime } = statSync(file);
    writeFileSync(file, config(12));
    utimesSync(file, mtime, mtime);
    expect(summary(source)[0]!.max).toBe(12);
    expect(await reloads('applied')).toBe(2);
  });

  it('keeps the policies in force when the file becomes invalid, counts and logs it, and recovers', async () => {
    const { source, logs, reloads } = setup();
    const before = source.current();
    write(config(4).replace('minReplicas: 1', 'minReplicas: 7')); // above maxReplicas 4
    expect(source.current()).toBe(before);
    expect(summary(source)).toEqual([{ pool: 'chat', max: 4, objective: 800 }]);
    expect(await reloads('invalid')).toBe(1);
    expect(await reloads('applied')).toBe(0);
    const errors = logs.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ file, msg: expect.stringContaining('invalid') });
    expect(errors[0]!.problems).toEqual([
      expect.stringMatching(/^pools\.0\.autoscale\.minReplicas: .*above maxReplicas/),
    ]);

    // Not YAML at all: the same, one more invalid.
    write('pools: [ { name: chat, autoscale: { maxReplicas: 3 }');
    expect(source.current()).toBe(before);
    expect(await reloads('invalid')).toBe(2);

    // Fixed: applied.
    write(config(6));
    expect(summary(source)[0]!.max).toBe(6);
    expect(await reloads('applied')).toBe(1);
  });

  it('keeps the policies when the file disappears, and re-reads it when it is back', async () => {
    const { source, logs, reloads } = setup();
    rmSync(file);
    expect(summary(source)[0]!.max).toBe(4);
    expect(await reloads('invalid')).toBe(1);
    expect(logs.at(-1)!.problems).toEqual([expect.stringContaining('cannot read')]);
    write(config(3));
    expect(summary(source)[0]!.max).toBe(3);
  });

  it('does not serve a pool the file adds, and warns that it needs a restart', async () => {
    const { source, logs, reloads } = setup();
    const added = `  - name: extra\n    autoscale: { minReplicas: 2, maxReplicas: 8 }\n`;
    write(config(5, added));
    expect(summary(source)).toEqual([{ pool: 'chat', max: 5, objective: 800 }]);
    expect(await reloads('applied')).toBe(1);
    const warnings = logs.filter((l) => l.level === 40);
    expect(warnings).toEqual([expect.objectContaining({ pools: ['extra'], msg: expect.stringContaining('restart') })]);
  });

  it('follows autoscale sections added to or removed from known pools', () => {
    const { source } = setup();
    write(`${config(4)}    autoscale: { maxReplicas: 2 }\n`); // `fixed` gets a policy
    expect(summary(source)).toEqual([
      { pool: 'chat', max: 4, objective: 800 },
      { pool: 'fixed', max: 2, objective: 1000 },
    ]);
    write(`pools:\n  - name: chat\n  - name: fixed\n`);
    expect(source.current()).toEqual([]);
  });

  it('never reads a file when INTERFLEET_CONFIG is unset', async () => {
    write(config(4));
    const env = { LOG_LEVEL: 'silent' };
    const metrics = createSchedulerMetrics({});
    const pools = loadConfig({ ...env, INTERFLEET_CONFIG: file }).pools;
    const source = new PolicySource({ pools, env, logger: pino({ level: 'silent' }), metrics });
    write(config(9));
    expect(source.current().map((p) => p.policy.maxReplicas)).toEqual([4]);
    expect((await metrics.autoscalerPolicyReloads.get()).values).toEqual([]);
  });
});
