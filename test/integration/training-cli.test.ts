/**
 * The training SDK (`client.training`), the logs endpoint and the
 * `interfleet train` CLI against a real fleet on a real Redis (its own key
 * prefix): the producer's HTTP API, a leading scheduler admitting on its own
 * timers, and two gpu-workers with one training slot each running
 * test/fixtures/training-rank.mjs, whose metric lines become each rank's
 * job log. The CLI runs in-process (through the real client and HTTP) and,
 * for the exit statuses and stderr a user sees, as a child process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { InterfleetApiError, InterfleetClient } from '../../producer/client/index.ts';
import { apiTrainingJobSchema, type ApiTrainingJob } from '../../producer/client/training-wire.ts';
import { buildProgram } from '../../producer/cli/program.ts';
import { formatTrainingProgress, meanLoss } from '../../producer/cli/train-commands.ts';
import type { toApiTrainingJob } from '../../producer/routes/training.ts';
import { startScheduler, type RunningScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

// The client's schema describes what the route sends (whose `object` is typed string): a field added to
// one and not the other, or typed differently, fails to compile.
type Sent = Omit<ReturnType<typeof toApiTrainingJob>, 'object'>;
type Parsed = Omit<ApiTrainingJob, 'object'>;
const sentIsParsed: Sent extends Parsed ? (Parsed extends Sent ? true : never) : never = true;

const root = fileURLToPath(new URL('../../', import.meta.url));
const tsx = join(root, 'node_modules/.bin/tsx');
const fixture = resolve(import.meta.dirname, '../fixtures/training-rank.mjs');

const yaml = `
scheduler: { renewEveryMs: 200, balanceEveryMs: 200 }
batch: { admitEveryMs: 50 }
worker: { heartbeatMs: 100 }
pools:
  - name: p
    backend: echo
    lanes: { realtime: { concurrency: 1 }, bulk: { concurrency: 0 }, training: { concurrency: 1, programs: ['${process.execPath}'] } }
`;

let fleet: TestFleet;
let scheduler: RunningScheduler;
let client: InterfleetClient;
let dir: string;

beforeAll(async () => {
  fleet = await startFleet({ yaml, workers: 2 });
  scheduler = await startScheduler(fleet.config, { logger: silentLogger() });
  client = new InterfleetClient({ baseUrl: fleet.producer.url });
  dir = await mkdtemp(join(tmpdir(), 'training-cli-'));
});
afterAll(async () => {
  await scheduler?.close();
  await fleet?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

let runs = 0;
/** A job running the fixture on pool p, checkpointing under its own folder of `dir`. */
function gang(workers: number, params: Record<string, unknown> = {}, rounds = 1) {
  return {
    pool: 'p',
    command: process.execPath,
    args: [fixture],
    data_uri: `${pathToFileURL(join(dir, 'corpus')).href}/`, // shard none: never read
    shard: 'none' as const,
    checkpoint_uri: `${pathToFileURL(join(dir, `run-${runs++}`)).href}/`,
    params: { barrier: true, ...params },
    workers,
    rounds,
  };
}

/** Runs the CLI in-process; what it printed, and the exit status it set. */
async function cli(args: string[]): Promise<{ stdout: string; exitCode: number }> {
  let stdout = '';
  let exitCode = 0;
  const program = buildProgram({
    stdout: { write: (t: string) => (stdout += t) },
    client: (baseUrl) => new InterfleetClient({ baseUrl }),
    now: Date.now,
    setExitCode: (code) => (exitCode = code),
  });
  await program.parseAsync(['node', 'interfleet', 'train', ...args, '--url', fleet.producer.url]);
  return { stdout, exitCode };
}

/** Runs the CLI as a user does: a child process through tsx. */
function cliProcess(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    const child = spawn(tsx, ['producer/cli.ts', 'train', ...args, '--url', fleet.producer.url], {
      cwd: root,
      env: { ...process.env, INTERFLEET_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const apiError = (p: Promise<unknown>): Promise<InterfleetApiError> =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => {
      expect(err).toBeInstanceOf(InterfleetApiError);
      return err as InterfleetApiError;
    },
  );

describe('client.training', () => {
  it('creates a job, waits for both rounds, retrieves it, and reads each rank log of a round', async () => {
    expect(sentIsParsed).toBe(true);
    const created = await client.training.create(gang(2, {}, 2));
    expect(created).toMatchObject({ object: 'training.job', status: 'queued', round: 1, rounds: 2, workers: 2 });

    const seen: string[] = [];
    const final = await client.training.wait(created.id, {
      intervalMs: 50,
      onProgress: (j) => seen.push(`${j.status}:${j.round}`),
    });
    expect(final.status).toBe('succeeded');
    expect(seen.at(-1)).toBe('succeeded:2');
    expect(final.ranks.map((r) => [r.round, r.rank, r.status])).toEqual([
      [1, 0, 'succeeded'],
      [1, 1, 'succeeded'],
      [2, 0, 'succeeded'],
      [2, 1, 'succeeded'],
    ]);
    expect(await client.training.retrieve(created.id)).toEqual(final);
    // Nothing the route sends is dropped by the client's schema.
    const raw: unknown = await (await fetch(`${fleet.producer.url}/v1/training/jobs/${created.id}`)).json();
    expect(apiTrainingJobSchema.parse(raw)).toEqual(raw);

    // Default: every rank of the last round, each its two metric lines.
    const last = await client.training.logs(created.id);
    expect(last).toMatchObject({ object: 'training.logs', id: created.id, round: 2, tail: 100 });
    expect(last.ranks.map((r) => [r.rank, r.status, r.total_lines])).toEqual([
      [0, 'succeeded', 2],
      [1, 'succeeded', 2],
    ]);
    expect(last.ranks.map((r) => JSON.parse(r.lines[0]!) as unknown)).toEqual([
      { metric: 'loss', value: 1 / 3, step: 2 },
      { metric: 'loss', value: 1 / 4, step: 2 },
    ]);
    // One rank of an earlier round, its last line only.
    const one = await client.training.logs(created.id, { round: 1, rank: 1, tail: 1 });
    expect(one.round).toBe(1);
    expect(one.ranks).toEqual([
      {
        rank: 1,
        status: 'succeeded',
        total_lines: 2,
        lines: [JSON.stringify({ metric: 'accuracy', value: 0.51, step: 1 })],
      },
    ]);
  });

  it('answers bad log queries with 400 naming the parameter, and unknown jobs with 404', async () => {
    // A gang of 3 on 2 slots: it stays queued and never runs.
    const queued = await client.training.create(gang(3, {}, 2));
    const logs = await client.training.logs(queued.id);
    expect(logs.round).toBe(1);
    expect(logs.ranks).toEqual([0, 1, 2].map((rank) => ({ rank, status: null, total_lines: 0, lines: [] })));

    const url = (qs: string) => `${fleet.producer.url}/v1/training/jobs/${queued.id}/logs?${qs}`;
    const bad = async (qs: string) => {
      const res = await fetch(url(qs));
      expect(res.status).toBe(400);
      return ((await res.json()) as { error: { message: string; param: string | null } }).error;
    };
    expect(await bad('tail=0')).toEqual(
      expect.objectContaining({ message: 'invalid query: tail: tail is at least 1', param: 'tail' }),
    );
    expect((await bad('round=abc')).message).toBe('invalid query: round: round must be a number');
    expect((await bad('rank=1.5')).message).toBe('invalid query: rank: rank must be an integer');
    expect((await bad('follow=1')).message).toBe('invalid query: unsupported query parameter(s): follow');
    expect(await bad('round=3')).toEqual(
      expect.objectContaining({ message: `round: training job ${queued.id} has 2 round(s)`, param: 'round' }),
    );
    expect((await bad('rank=3')).message).toBe(`rank: training job ${queued.id} has ranks 0 to 2`);

    const tail = await apiError(client.training.logs(queued.id, { tail: 20_000 }));
    expect(tail).toMatchObject({ status: 400, param: 'tail', message: 'invalid query: tail: tail is at most 10000' });
    const missing = await apiError(client.training.logs('train_00000000000000000000'));
    expect(missing).toMatchObject({
      status: 404,
      code: 'not_found',
      message: "No training job found with id 'train_00000000000000000000'",
    });
    expect(await apiError(client.training.retrieve('train_00000000000000000000'))).toMatchObject({ status: 404 });
    expect(await apiError(client.training.logs('nope'))).toMatchObject({ status: 400, param: 'id' });

    const cancelled = await client.training.cancel(queued.id);
    expect(cancelled).toMatchObject({ status: 'cancelled', error: 'cancelled by request' });
    expect(await apiError(client.training.cancel(queued.id))).toMatchObject({ status: 409, code: 'conflict' });
  });
});

describe('interfleet train', () => {
  it('refuses an invalid job file with every problem and its field, before sending anything', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'pool: p\ncommand: x\nworkers: 0\nrounds: 2.5\nlr: 0.1\n');
    await expect(cli(['submit', join(dir, 'bad.yaml')])).rejects.toThrow(
      `${join(dir, 'bad.yaml')} is not a valid training job:\n` +
        '  data_uri: data_uri is required: a storage URI (file://, gs:// or oci://)\n' +
        '  checkpoint_uri: checkpoint_uri is required: a storage URI (file://, gs:// or oci://)\n' +
        '  workers: workers is at least 1\n' +
        '  rounds: rounds must be an integer\n' +
        '  unsupported field(s): lr',
    );
    await writeFile(join(dir, 'broken.json'), '{"pool": ');
    await expect(cli(['submit', join(dir, 'broken.json')])).rejects.toThrow(/broken\.json is not valid JSON: /);
    await expect(cli(['submit', join(dir, 'absent.yaml')])).rejects.toThrow(/cannot read .*absent\.yaml: ENOENT/);
  });

  it('submits without waiting, shows the status, logs and cancels it', async () => {
    await writeFile(join(dir, 'queued.json'), JSON.stringify(gang(3)));
    const submit = await cli(['submit', join(dir, 'queued.json'), '--no-wait']);
    const id = submit.stdout.trim();
    expect(id).toMatch(/^train_[0-9a-f]{20}$/);

    const status = await cli(['status', id]);
    expect(status.stdout).toContain(
      `${id}\n  status     queued, round 1 of 1\n  pool       p (tenant default, priority 0)`,
    );
    expect(status.stdout).toContain('  gang       3 rank(s), gang mode, restarted 0 of at most 3 time(s)');
    expect(status.stdout).toContain(`  command    ${process.execPath} ${fixture}`);
    const json = JSON.parse((await cli(['status', id, '--json'])).stdout) as ApiTrainingJob;
    expect(json).toMatchObject({ id, status: 'queued' });

    const logs = await cli(['logs', id, '--rank', '2']);
    expect(logs.stdout).toBe('==> round 1, rank 2: not started, 0 line(s) <==\n');

    const cancel = await cli(['cancel', id]);
    expect(cancel).toEqual({ stdout: `${id} cancelled\n`, exitCode: 0 });
    await expect(cli(['cancel', id])).rejects.toThrow(`training job ${id} is cancelled and cannot be cancelled`);
  });

  it('follows a job whose rank fails, prints plain progress lines and the failure, and exits 2', async () => {
    await writeFile(join(dir, 'fail.yaml'), JSON.stringify(gang(2, { barrier: false, failRank: 1 })));
    const run = await cli(['submit', join(dir, 'fail.yaml'), '--poll', '50']);
    expect(run.exitCode).toBe(2);
    const lines = run.stdout.split('\n');
    const id = lines[0]!;
    expect(id).toMatch(/^train_/);
    // Not a terminal: one line per change, no carriage returns.
    expect(run.stdout).not.toContain('\r');
    expect(lines[1]).toMatch(/^(queued|running|failed) +round 1\/1 /);
    expect(run.stdout).toMatch(/\nfailed +round 1\/1 {2}ranks: \d running, \d succeeded, 1 failed/);
    expect(run.stdout).toContain(`${id}\n  status     failed, round 1 of 1`);
    expect(run.stdout).toContain('! rank 1 of round 1: exit code 3');

    const logs = await cli(['logs', id, '--rank', '1']);
    expect(logs.stdout).toBe('==> round 1, rank 1: failed, 0 line(s) <==\n');
  });

  it('as a child process: follows a YAML job to success (exit 0) and reports an invalid file on stderr (exit 1)', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'pool: p\ncommand: x\nworkers: 0\n');
    const job = gang(2);
    const yamlFile = join(dir, 'job.yaml');
    await writeFile(
      yamlFile,
      [
        'pool: p',
        `command: ${JSON.stringify(job.command)}`,
        `args: [${JSON.stringify(fixture)}]`,
        `data_uri: ${JSON.stringify(job.data_uri)}`,
        'shard: none',
        `checkpoint_uri: ${JSON.stringify(job.checkpoint_uri)}`,
        'params: { barrier: true }',
        'workers: 2',
        '',
      ].join('\n'),
    );
    const [ok, bad] = await Promise.all([
      cliProcess(['submit', yamlFile, '--poll', '50']),
      cliProcess(['submit', join(dir, 'bad.yaml')]),
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const id = ok.stdout.split('\n')[0]!;
    expect(ok.stdout).toMatch(
      /\nsucceeded +round 1\/1 {2}ranks: 0 running, 2 succeeded, 0 failed {2}loss 0\.4167 {2}elapsed \d+s\n/,
    );
    expect(ok.stdout).toContain(`${id}\n  status     succeeded, round 1 of 1`);
    expect(ok.stdout).toMatch(/ {4}0 {2}succeeded {2}\S+ {2}exit 0 {2}loss=0\.5 {2}accuracy=0\.51\n/);

    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('is not a valid training job:\n  data_uri: data_uri is required');
    expect(bad.stderr).toContain('  workers: workers is at least 1\n');
  });
});

describe('train progress line', () => {
  const base = apiTrainingJobSchema.parse({
    id: 'train_0190000000001234abcd',
    object: 'training.job',
    pool: 'p',
    tenant: 'default',
    status: 'queued',
    round: 1,
    rounds: 3,
    workers: 2,
    priority: 0,
    max_attempts: 1,
    command: 'builtin:text-classifier',
    args: [],
    data_uri: ['file:///d/'],
    shard: 'lines',
    mode: 'rounds',
    init_uri: null,
    checkpoint_uri: 'file:///c/',
    models: [],
    params: {},
    waiting_reason: 'waiting_for_slots',
    error: null,
    created_at: 0,
    admitted_at: null,
    ended_at: null,
    ranks: [],
  });
  const rank = (round: number, r: number, status: 'running' | 'succeeded', loss?: number) => ({
    round,
    rank: r,
    status,
    worker: 'w',
    exit_code: status === 'running' ? null : 0,
    reason: null,
    metrics: (loss === undefined ? {} : { loss }) as Record<string, number>,
    checkpoint_uri: 'file:///c/',
    started_at: 0,
    ended_at: null,
  });

  it('says why a queued job waits, counts the ranks of the round, and averages the latest loss', () => {
    expect(formatTrainingProgress(base, 1200)).toBe(
      'queued      round 1/3  waiting: waiting_for_slots (2 ranks need more training slots than are free now; none started)  elapsed 1s',
    );
    const running = { ...base, status: 'running' as const, round: 2, waiting_reason: null };
    const job: ApiTrainingJob = {
      ...running,
      ranks: [rank(1, 0, 'succeeded', 0.6), rank(1, 1, 'succeeded', 0.4), rank(2, 0, 'running')],
    };
    expect(meanLoss(job)).toEqual({ round: 1, loss: 0.5 });
    expect(formatTrainingProgress(job, 75_000)).toBe(
      'running     round 2/3  ranks: 1 running, 0 succeeded, 0 failed, 1 pending  loss 0.5 (round 1)  elapsed 1m15s',
    );
    job.ranks[2] = rank(2, 0, 'succeeded', 0.3);
    expect(formatTrainingProgress(job, 0)).toBe(
      'running     round 2/3  ranks: 0 running, 1 succeeded, 0 failed, 1 pending  loss 0.3  elapsed 0s',
    );
  });
});
