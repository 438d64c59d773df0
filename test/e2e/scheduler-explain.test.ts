/**
 * `interfleet scheduler explain` end to end: a producer, a leading
 * scheduler and a gpu-worker (sim backend, so real-time has measurable
 * first-token times), real-time requests through the HTTP API and a batch;
 * the CLI (in-process, through the real client and HTTP) prints the bulk
 * budget with its reason and the admission decisions the leader recorded,
 * and the scheduler's /metrics shows the same budget. Training gangs
 * submitted through the HTTP API show up with their place and reason (the
 * worker has one training slot), and in the training metrics.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { InterfleetClient } from '../../producer/client/index.ts';
import { buildProgram } from '../../producer/cli/program.ts';
import { startScheduler, type RunningScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { until } from '../helpers/until.ts';

const yaml = `
worker: { heartbeatMs: 200, latencyWindowMs: 5000 }
scheduler: { renewEveryMs: 200, balanceEveryMs: 200, balance: { minSamples: 5 } }
batch: { chunkLines: 2, windowPerPool: 2, admitEveryMs: 100 }
pools:
  - name: sim
    backend: sim
    firstTokenObjectiveMs: 5000
    sim: { timeScale: 0.05 }
    lanes: { bulk: { concurrency: 2 }, training: { concurrency: 1, programs: ['${process.execPath}'] } }
`;

const rankFixture = resolve(import.meta.dirname, '../fixtures/training-rank.mjs');

let fleet: TestFleet;
let scheduler: RunningScheduler;
let dir: string;

beforeAll(async () => {
  fleet = await startFleet({ yaml, workers: 1 });
  // Its /metrics on a free port (the test config turns probe servers off).
  const config = { ...fleet.config, scheduler: { ...fleet.config.scheduler, metricsPort: 0 } };
  scheduler = await startScheduler(config, { logger: silentLogger() });
  dir = await mkdtemp(join(tmpdir(), 'explain-'));
}, 30_000);
afterAll(async () => {
  await scheduler?.close();
  await fleet?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function explainCli(args: string[]): Promise<string> {
  let out = '';
  const program = buildProgram({
    stdout: { write: (t: string) => (out += t) },
    client: (baseUrl) => new InterfleetClient({ baseUrl }),
    now: Date.now,
    setExitCode: () => undefined,
  });
  await program.parseAsync(['node', 'interfleet', 'scheduler', 'explain', ...args, '--url', fleet.producer.url]);
  return out;
}

describe('interfleet scheduler explain', () => {
  it('prints the bulk budget and why, real-time against its objective, and the admission of a batch', async () => {
    const client = new InterfleetClient({ baseUrl: fleet.producer.url });
    // Real-time traffic: the worker's heartbeat window fills with first-token times.
    for (let i = 0; i < 8; i++)
      await client.chat('sim', [{ role: 'user', content: 'hello '.repeat(50) }], { maxTokens: 4 });
    const lines = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({
        custom_id: `r${i}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { messages: [{ role: 'user', content: 'x'.repeat(400) }], max_tokens: 8 },
      }),
    );
    await writeFile(join(dir, 'in.jsonl'), `${lines.join('\n')}\n`);
    const batch = await client.createBatch({
      input_file: pathToFileURL(join(dir, 'in.jsonl')).href,
      endpoint: '/v1/chat/completions',
      model: 'sim',
      completion_window: '1h',
      tenant: 'nlp',
    });

    const explain = await until(async () => {
      const e = await client.explainScheduler('sim');
      const p = e.pools[0]!;
      return p.budget && p.budget.decision.observed.samples >= 5 && p.admission?.batches.length ? e : undefined;
    }, 20_000);
    const { budget, admission } = explain.pools[0]!;
    expect(budget!.objectiveMs).toBe(5000);
    expect(budget!.workers.ready).toBe(1);
    expect(budget!.decision.observed.bulkSlots).toBe(2);
    expect(['headroom', 'within_band', 'no_realtime_load']).toContain(budget!.decision.reason);
    expect(admission!.batches[0]).toMatchObject({ batchId: batch.id, tenant: 'nlp' });

    const text = await explainCli(['sim']);
    expect(text).toContain('pool sim');
    expect(text).toMatch(/bulk budget {3}\d+ of 2 slots/);
    expect(text).toMatch(/p99 first token \d+ ms over \d+ requests \(objective 5000 ms, [\d.]+ over it\)/);
    expect(text).toContain(batch.id);
    expect(text).toMatch(/nlp/);

    const json = JSON.parse(await explainCli(['sim', '--json'])) as { object: string };
    expect(json.object).toBe('scheduler.explain');

    // The same budget on the scheduler's /metrics.
    const metrics = await (await fetch(scheduler.metricsUrl!)).text();
    expect(metrics).toMatch(/interfleet_scheduler_bulk_budget\{[^}]*pool="sim"[^}]*\} \d+/);
    expect(metrics).toMatch(/interfleet_scheduler_leader\{[^}]*\} 1/);
  }, 60_000);

  it("prints each training gang's place and reason, and the training metrics", async () => {
    const jobs = `${fleet.producer.url}/v1/training/jobs`;
    const submit = async (name: string, workers: number, params: Record<string, unknown>, tenant: string) => {
      const res = await fetch(jobs, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          pool: 'sim',
          tenant,
          command: process.execPath,
          args: [rankFixture],
          data_uri: `${pathToFileURL(join(dir, 'corpus')).href}/`, // shard none: never read
          shard: 'none',
          checkpoint_uri: `${pathToFileURL(join(dir, name)).href}/`,
          params,
          workers,
        }),
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { id: string }).id;
    };
    // One slot: the first gang takes it, the second waits for it (and reserves), the third can never fit.
    const first = await submit('first', 1, { sleepMs: 30_000 }, 'vision');
    const second = await submit('second', 1, {}, 'nlp');
    const third = await submit('third', 2, {}, 'nlp');
    try {
      const client = new InterfleetClient({ baseUrl: fleet.producer.url });
      const training = await until(async () => {
        const t = (await client.explainScheduler('sim')).pools[0]!.training;
        const held = t?.gangs.find((g) => g.jobId === second)?.reason === 'waiting_for_slots';
        return held && t?.gangs[0]?.state === 'running' ? t : undefined;
      }, 20_000);
      expect(training.slots).toEqual({ total: 1, held: 1, free: 0 });
      expect(training.quota).toBeNull();
      expect(training.gangs.map((g) => [g.jobId, g.tenant, g.size, g.state, g.decision, g.reason])).toEqual([
        [first, 'vision', 1, 'running', null, null],
        [second, 'nlp', 1, 'queued', 'hold', 'waiting_for_slots'],
        [third, 'nlp', 2, 'queued', 'hold', 'exceeds_pool_slots'],
      ]);

      const text = await explainCli(['sim']);
      expect(text).toMatch(/ {2}training {6}1 of 1 slots held, 0 free; 1 running, 2 waiting/);
      expect(text).toMatch(new RegExp(`${first} +vision .* running +admitted by an earlier pass`));
      expect(text).toMatch(new RegExp(`${second} +nlp .* queued +hold: waiting_for_slots \\(needs 1, 0 free\\)`));
      expect(text).toMatch(new RegExp(`${third} +nlp .* queued +hold: exceeds_pool_slots`));

      const metrics = await (await fetch(scheduler.metricsUrl!)).text();
      const metric = (name: string, labels = '') =>
        new RegExp(`${name}\\{[^}]*pool="sim"[^}]*${labels}[^}]*\\} (\\d+)`).exec(metrics)?.[1];
      expect(metric('interfleet_scheduler_training_gangs_admitted_total')).toBe('1');
      expect(metric('interfleet_scheduler_training_gangs_waiting')).toBe('2');
      expect(metric('interfleet_scheduler_training_slots_held')).toBe('1');
      expect(
        Number(metric('interfleet_scheduler_training_decisions_total', 'reason="waiting_for_slots"')),
      ).toBeGreaterThan(0);
      expect(Number(metric('interfleet_scheduler_training_decisions_total', 'reason="fits"'))).toBe(1);
    } finally {
      // The sleeping rank is stopped rather than left to the fleet's shutdown.
      for (const id of [first, second, third]) await fetch(`${jobs}/${id}/cancel`, { method: 'POST' });
    }
  }, 60_000);

  it('answers 404 for an unknown pool', async () => {
    const res = await fetch(`${fleet.producer.url}/v1/scheduler/explain?pool=nope`);
    expect(res.status).toBe(404);
  });
});
