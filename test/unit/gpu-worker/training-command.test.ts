import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rankJobFor, type MetricLine, type TrainingSpec } from '../../../common/contracts/training.ts';
import {
  failureReason,
  LineSplitter,
  parseMetricLine,
  rankEnv,
  runCommand,
  stderrTailBytes,
  type RunOptions,
} from '../../../gpu-worker/training/run-command.ts';

const fixture = resolve(import.meta.dirname, '../../fixtures/training-rank.mjs');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-train-cmd-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function spec(over: Partial<TrainingSpec> = {}): TrainingSpec {
  return {
    id: 'train_0000000000000000abcd',
    pool: 'p',
    tenant: 't',
    command: process.execPath,
    args: [fixture],
    dataUri: 'file:///data/',
    shard: 'none',
    mode: 'gang',
    initUri: null,
    checkpointPrefix: `${pathToFileURL(dir).href}/ckpt/`,
    params: { lr: 0.1 },
    workers: 2,
    rounds: 2,
    priority: 0,
    attempts: 1,
    createdAt: 0,
    ...over,
  };
}

describe('parseMetricLine', () => {
  it.each([
    ['{"metric":"loss","value":0.5,"step":3}', { metric: 'loss', value: 0.5, step: 3 }],
    ['  {"metric":"lr"}  ', { metric: 'lr' }],
    ['{"metric":"loss","value":1,"extra":"kept"}', { metric: 'loss', value: 1, extra: 'kept' }],
    ['epoch 1 done', undefined],
    ['{"loss":0.5}', undefined],
    ['{"metric":"","value":1}', undefined],
    ['{"metric":"loss","value":"high"}', undefined],
    ['{not json', undefined],
    ['[1,2]', undefined],
  ])('%s', (line, expected) => {
    expect(parseMetricLine(line)).toEqual(expected);
  });
});

describe('LineSplitter', () => {
  it('splits across chunks, keeps the last unterminated line, skips over-long lines whole', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), 8);
    s.push('ab\ncd');
    s.push('e\n0123456789');
    s.push('abc\nok\nlast');
    s.end();
    expect(lines).toEqual(['ab', 'cde', 'ok', 'last']);
  });
});

describe('rankEnv', () => {
  it("gives the rank's INTERFLEET_* variables, the pool's declared ones and only the allowed part of the worker's", () => {
    const env = rankEnv(rankJobFor(spec(), 2, 1), {
      worker: {
        PATH: '/bin',
        HOME: '/home/worker',
        TMPDIR: '/var/tmp/worker',
        LANG: 'C.UTF-8',
        REDIS_URL: 'redis://:secret@x',
        CUDA_VISIBLE_DEVICES: '0',
        NVIDIA_API_KEY: 'nvapi-secret',
        NODE_OPTIONS: '--require /worker/preload.js',
        VLLM_API_KEY: 'k',
      },
      // The rank's own names win over the pool's.
      declared: { HF_HOME: '/models/hf', RANK: '9', HOME: '/elsewhere' },
      dirs: { work: '/w', data: '/w/data', init: '/w/init', output: '/w/output' },
      master: { addr: '10.0.0.7', port: 29500 },
    });
    expect(env).toEqual({
      PATH: '/bin',
      LANG: 'C.UTF-8',
      CUDA_VISIBLE_DEVICES: '0',
      HF_HOME: '/models/hf',
      HOME: '/w/home',
      TMPDIR: '/w/tmp',
      RANK: '1',
      WORLD_SIZE: '2',
      LOCAL_RANK: '0',
      LOCAL_WORLD_SIZE: '1',
      // gang mode: rank 0's published address, and the gang's restarts so far.
      MASTER_ADDR: '10.0.0.7',
      MASTER_PORT: '29500',
      TORCHELASTIC_RESTART_COUNT: '0',
      INTERFLEET_RESTART: '0',
      INTERFLEET_WORK_DIR: '/w',
      INTERFLEET_DATA_DIR: '/w/data',
      INTERFLEET_INIT_DIR: '/w/init',
      INTERFLEET_OUTPUT_DIR: '/w/output',
      // gang mode: a rank starts from its own checkpoint of the round before.
      INTERFLEET_INIT_URI: `${spec().checkpointPrefix}round-1/rank-1/`,
      INTERFLEET_HYPERPARAMS: '{"lr":0.1}',
      INTERFLEET_RANK: '1',
      INTERFLEET_WORLD_SIZE: '2',
      INTERFLEET_ROUND: '2',
      INTERFLEET_JOB_ID: 'train_0000000000000000abcd',
      INTERFLEET_DATA_URI: 'file:///data/',
      INTERFLEET_CHECKPOINT_URI: `${spec().checkpointPrefix}round-2/rank-1/`,
      INTERFLEET_PREVIOUS_CHECKPOINT_URI: `${spec().checkpointPrefix}round-1/rank-1/`,
      INTERFLEET_PARAMS: '{"lr":0.1}',
    });
  });
});

describe('runCommand', () => {
  const run = (over: Partial<RunOptions> & { env: Record<string, string> }) => {
    const metrics: MetricLine[] = [];
    const result = runCommand({
      command: process.execPath,
      args: [fixture],
      signal: new AbortController().signal,
      onMetric: (m) => metrics.push(m),
      killAfterMs: 500,
      ...over,
    });
    return { metrics, result };
  };

  it('runs the command without a shell, reads its metric lines, and it checkpoints', async () => {
    const job = rankJobFor(spec(), 1, 0);
    const { metrics, result } = run({ env: rankEnv(job, { worker: { ...process.env, REDIS_URL: 'redis://x' } }) });
    expect(await result).toMatchObject({ exitCode: 0, signal: null, spawnError: null });
    expect(metrics).toEqual([
      { metric: 'loss', value: 1 / 2, step: 1 },
      { metric: 'accuracy', value: 0.51, step: 1 },
    ]);
    const model = JSON.parse(await readFile(join(dir, 'ckpt/round-1/rank-0/model.json'), 'utf8'));
    expect(model).toEqual({ rank: 0, worldSize: 2, round: 1, lr: 0.1, resumedFrom: null, sawRedisUrl: false });
  });

  it('a non-zero exit: its code and the end of stderr make the reason', async () => {
    const job = rankJobFor(spec({ params: { failRank: 1 } }), 1, 1);
    const r = await run({ env: rankEnv(job, { worker: process.env }) }).result;
    expect(r.exitCode).toBe(3);
    expect(failureReason(r)).toBe('exit code 3; stderr: rank 1: loss is NaN');
  });

  it('keeps only the end of a long stderr', async () => {
    const r = await run({
      args: ['-e', `process.stderr.write('x'.repeat(10000) + 'END'); process.exit(1)`],
      env: { PATH: process.env.PATH ?? '' },
    }).result;
    expect(r.stderrTail).toHaveLength(stderrTailBytes);
    expect(r.stderrTail.endsWith('END')).toBe(true);
  });

  it('a command that cannot start', async () => {
    const r = await run({ command: join(dir, 'no-such-program'), args: [], env: {} }).result;
    expect(r.spawnError).toBeInstanceOf(Error);
    expect(failureReason(r)).toMatch(/^could not start: .*ENOENT/);
  });

  it('an abort stops the process group: SIGTERM, then SIGKILL for one that ignores it', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const { result } = run({
      args: ['-e', `process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)`],
      env: { PATH: process.env.PATH ?? '' },
      signal: controller.signal,
      killAfterMs: 200,
    });
    setTimeout(() => controller.abort('gang_ended'), 300);
    const r = await result;
    expect(r.signal).toBe('SIGKILL');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(failureReason(r)).toBe('killed by SIGKILL');
  });
});
