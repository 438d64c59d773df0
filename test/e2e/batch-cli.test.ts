/**
 * The `interfleet batch` CLI as a user runs it (a child process through tsx)
 * against a real producer: output, exit statuses and error messages. Then
 * its pure parts (progress rate and ETA, the redrawn line) in-process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore } from '../../common/batch/batch-state.ts';
import { toApiBatch, type ApiBatch } from '../../common/contracts/batch-api.ts';
import { formatDuration, formatProgress, ProgressLine, ProgressMeter } from '../../producer/cli/progress.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tsx = join(root, 'node_modules/.bin/tsx');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `onStdout` sees stdout as it arrives (to act while it waits). */
function cli(args: string[], onStdout?: (soFar: string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(tsx, ['producer/cli.ts', ...args], {
      cwd: root,
      env: { ...process.env, INTERFLEET_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let fleet: TestFleet;
let store: BatchStore;
let url: string;
let dir: string;
let inputUri: string;

beforeAll(async () => {
  fleet = await startFleet({ yaml: 'pools:\n  - name: tiny\n    backend: echo\n', workers: 0 });
  store = new BatchStore(fleet.redis, fleet.prefix);
  url = fleet.producer.url;
  dir = await mkdtemp(join(tmpdir(), 'batch-cli-'));
  const line = (i: number) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: `t${i}` } },
    });
  await writeFile(join(dir, 'in.jsonl'), [1, 2, 3].map(line).join('\n') + '\n');
  inputUri = pathToFileURL(join(dir, 'in.jsonl')).href;
});
afterAll(async () => {
  await fleet.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('interfleet batch', () => {
  it('lists no batches, submits one without waiting, then shows, lists and cancels it', async () => {
    const empty = await cli(['batch', 'list', '--url', url]);
    expect(empty).toMatchObject({ code: 0, stdout: 'no batches\n' });

    const submit = await cli([
      ...['batch', 'submit', inputUri, '--endpoint', '/v1/infer', '--model', 'tiny', '--window', '2h'],
      ...['--priority', '4', '--metadata', 'team=nlp', 'run=7', '--no-wait', '--url', url],
    ]);
    expect(submit.stderr).toBe('');
    expect(submit.code).toBe(0);
    const id = submit.stdout.trim();
    expect(id).toMatch(/^batch_[0-9a-f]{20}$/);
    expect((await store.get(id))?.spec).toMatchObject({
      model: 'tiny',
      endpoint: '/v1/infer',
      completionWindow: '2h',
      priority: 4,
      metadata: { team: 'nlp', run: '7' },
    });

    const [status, json, list] = await Promise.all([
      cli(['batch', 'status', id, '--url', url]),
      cli(['batch', 'status', id, '--json', '--url', url]),
      cli(['batch', 'list', '--limit', '5', '--url', url]),
    ]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(id);
    expect(status.stdout).toMatch(/status\s+(validating|in_progress)/);
    expect(status.stdout).toContain(`input      ${inputUri}`);
    expect((JSON.parse(json.stdout) as ApiBatch).id).toBe(id);
    expect(list.stdout).toMatch(/^ID\s+STATUS\s+MODEL/);
    expect(list.stdout).toContain(id);

    const cancel = await cli(['batch', 'cancel', id, '--url', url]);
    expect(cancel).toMatchObject({ code: 0, stdout: `${id} cancelling\n` });
  });

  it('follows a batch to its end and exits 2 when it did not complete', async () => {
    let forced = false;
    const run = await cli(
      ['batch', 'submit', inputUri, '--endpoint', '/v1/infer', '--poll', '20', '--url', url],
      (soFar) => {
        const id = /^(batch_[0-9a-f]{20})\n/.exec(soFar)?.[1];
        // The first progress line is out: end the batch as planning would on an unreadable input.
        if (id && !forced && soFar.split('\n').length > 2) {
          forced = true;
          void store.transition(id, ['validating', 'in_progress'], 'failed', {
            failed_at: Date.now(),
            errors: JSON.stringify([{ code: 'input_not_found', message: 'no such input', line: null, param: null }]),
          });
        }
      },
    );
    expect(run.code).toBe(2);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toMatch(/^batch_/);
    // Not a terminal: plain progress lines, no carriage returns.
    expect(run.stdout).not.toContain('\r');
    expect(lines[1]).toMatch(/^(validating|in_progress)/);
    expect(run.stdout).toMatch(/status\s+failed/);
    expect(run.stdout).toContain('! input_not_found: no such input');
  });

  it('reports API errors with the field and exits 1', async () => {
    const run = await cli(['batch', 'submit', inputUri, '--endpoint', '/v1/infer', '--window', '9d', '--url', url]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('completion_window 9d is longer than the limit of 7d [completion_window] (HTTP 400)');

    const missing = await cli(['batch', 'status', 'batch_00000000000000000000', '--url', url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("No batch found with id 'batch_00000000000000000000'");
  });

  it('says when the API cannot be reached', async () => {
    const port = await closedPort();
    const run = await cli(['batch', 'list', '--url', `http://127.0.0.1:${port}`]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`interfleet: cannot reach the interfleet API at http://127.0.0.1:${port} (ECONNREFUSED)\n`);
  });
});

/** A port nothing listens on: bound, then released. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('progress', () => {
  const batch = (status: ApiBatch['status'], done: number, total: number): ApiBatch => {
    const b = toApiBatch({
      spec: {
        id: 'batch_0190000000001234abcd',
        endpoint: '/v1/infer',
        model: 'tiny',
        input: 'gs://bkt/in.jsonl',
        outputPrefix: 'gs://bkt/out/',
        completionWindow: '24h',
        createdAt: 0,
        expiresAt: 86_400_000,
        metadata: null,
        priority: 0,
        tenant: 'default',
        source: 'api',
      },
      status,
      stop: null,
      planned: total > 0,
      plan: null,
      errors: [],
      timestamps: {},
      counters: {
        total,
        completed: done,
        failed: 0,
        chunks: 10,
        plan_chunks: total > 0 ? 10 : 0,
        cursor: 0,
        plan_byte: 0,
        admitted: 0,
        settled: Math.floor(done / 100),
        not_run: 0,
      },
      files: { output: null, error: null, manifest: null },
    });
    return b;
  };

  it('derives the rate and ETA from the recent polls', () => {
    const meter = new ProgressMeter();
    expect(meter.update(batch('validating', 0, 0), 0)).toMatchObject({ rate: undefined, etaMs: undefined });
    const p = meter.update(batch('in_progress', 100, 1000), 10_000);
    expect(p.rate).toBe(10);
    expect(p.etaMs).toBe(90_000);
    expect(formatProgress(p)).toBe('in_progress  100/1,000 lines (10%)  chunks 1/10  10.0 lines/s  ETA 1m30s');
    // Polls older than the 30 s window leave it (but the one just before it): the rate follows the pace.
    meter.update(batch('in_progress', 200, 1000), 40_000);
    expect(meter.update(batch('in_progress', 800, 1000), 50_000).rate).toBe((800 - 100) / 40);
  });

  it('formats durations', () => {
    expect([formatDuration(12_400), formatDuration(194_000), formatDuration(3_900_000)]).toEqual([
      '12s',
      '3m14s',
      '1h05m',
    ]);
  });

  it('redraws one line on a terminal, and prints changes only elsewhere', () => {
    const written: string[] = [];
    const tty = new ProgressLine({ write: (s: string) => written.push(s), isTTY: true });
    tty.show('a');
    tty.show('a');
    tty.show('b');
    tty.done();
    expect(written).toEqual(['\ra\x1b[K', '\rb\x1b[K', '\n']);

    written.length = 0;
    const pipe = new ProgressLine({ write: (s: string) => written.push(s) });
    pipe.show('a 1.0 lines/s', 'a');
    pipe.show('a 0.5 lines/s', 'a');
    pipe.show('b', 'b');
    pipe.done();
    expect(written).toEqual(['a 1.0 lines/s\n', 'b\n']);
  });
});
