/**
 * The batch control worker on a real Redis: plan jobs (planned, input
 * missing or outside the allowed roots, cancelled before or during
 * planning), a finalize job retried and one that fails for good, and cron
 * jobs from a BullMQ job scheduler. Each test runs its own worker under its
 * own key prefix.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStore, batchFiles, newBatchId, type BatchSpec } from '../../common/batch/batch-state.ts';
import type { BatchSchedule, Config } from '../../common/config.ts';
import { controlJobId, type ControlJob } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { closeRedis, createRedis } from '../../common/redis.ts';
import { createFileStorage, StorageError, type Storage } from '../../common/storage/index.ts';
import { batchControlQueue } from '../../common/topology.ts';
import { startBatchControl, type BatchControl } from '../../producer/batch/control-worker.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

let redis: Redis;
let dir: string;
const prefixes: string[] = [];

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  dir = await mkdtemp(join(tmpdir(), 'interfleet-control-'));
  const lines = Array.from({ length: 10 }, (_, i) =>
    JSON.stringify({
      custom_id: `r-${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: 'hi' } },
    }),
  );
  await writeFile(join(dir, 'input.jsonl'), `${lines.join('\n')}\n`);
});
afterAll(async () => {
  for (const prefix of prefixes) await deleteKeys(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

const uri = (name: string): string => pathToFileURL(join(dir, name)).href;
const keep: JobsOptions = { removeOnComplete: false, removeOnFail: false };

interface Harness {
  config: Config;
  store: BatchStore;
  queue: Queue;
  control: BatchControl;
  launches: { schedule: BatchSchedule; firedAt: Date }[];
  /** Creates a batch in validating; `outputName` is its output folder under the temp dir. */
  createBatch(input: string, outputName: string): Promise<BatchSpec>;
  add(job: ControlJob, opts?: JobsOptions): Promise<string>;
  /** Waits until the job finished; its final state. */
  finished(jobId: string): Promise<string>;
  stop(): Promise<void>;
}

async function harness(opts: { storage?: Storage; yaml?: string } = {}): Promise<Harness> {
  const config = testConfig(opts.yaml ?? 'batch:\n  chunkLines: 3\n');
  const prefix = config.redis.prefix;
  prefixes.push(prefix);
  const connection = createRedis(config.redis, 'worker');
  const store = new BatchStore(connection, prefix);
  const queueConnection = createRedis(config.redis, 'worker');
  const queue = new Queue(batchControlQueue, { connection: queueConnection, prefix });
  const launches: Harness['launches'] = [];
  const control: BatchControl = startBatchControl({
    config,
    connection,
    store,
    storage: opts.storage ?? createFileStorage(),
    logger: silentLogger(),
    statusPollMs: 20,
    launchScheduled: async (schedule, firedAt) => {
      launches.push({ schedule, firedAt });
      return newBatchId(firedAt.getTime());
    },
  });
  return {
    config,
    store,
    queue,
    control,
    launches,
    async createBatch(input, outputName) {
      const createdAt = Date.now();
      const spec: BatchSpec = {
        id: newBatchId(createdAt),
        endpoint: '/v1/infer',
        model: 'default',
        input,
        outputPrefix: `${uri(outputName)}/`,
        completionWindow: '24h',
        createdAt,
        expiresAt: createdAt + 86_400_000,
        metadata: null,
        priority: 0,
        tenant: 'default',
        source: 'api',
      };
      await store.create(spec);
      return spec;
    },
    async add(job, jobOpts = {}) {
      const jobId = job.kind === 'cron' ? undefined : controlJobId[job.kind](job.batchId);
      const added = await queue.add(job.kind, job, { jobId, ...keep, ...jobOpts });
      return added.id!;
    },
    async finished(jobId) {
      for (let i = 0; i < 250; i++) {
        const state = await queue.getJobState(jobId);
        if (state === 'completed' || state === 'failed') return state;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`job ${jobId} did not finish`);
    },
    async stop() {
      await control.close(0);
      await queue.close();
      await closeRedis(queueConnection);
      await closeRedis(connection);
    },
  };
}

describe('plan jobs', () => {
  it('plan a valid input: the batch moves to in_progress with its totals', async () => {
    const h = await harness();
    try {
      const spec = await h.createBatch(uri('input.jsonl'), 'planned');
      expect(await h.finished(await h.add({ kind: 'plan', batchId: spec.id }))).toBe('completed');
      const state = (await h.store.get(spec.id))!;
      expect(state.status).toBe('in_progress');
      expect(state.planned).toBe(true);
      expect(state.counters).toMatchObject({ total: 10, chunks: 4, cursor: 0, plan_byte: 0, admitted: 0 });
      expect(state.plan).toMatchObject({ planUri: batchFiles(spec.outputPrefix).plan, objects: 1 });
      expect(state.timestamps.in_progress_at).toBeGreaterThan(0);
      expect(await h.store.openIds()).toContain(spec.id);
    } finally {
      await h.stop();
    }
  });

  it('fail the batch at once, naming the URI, when the input is missing or outside the allowed roots', async () => {
    const h = await harness({ storage: createFileStorage({ roots: [join(dir, 'allowed')] }) });
    try {
      const missing = await h.createBatch(`${uri('allowed')}/nothing-here.jsonl`, 'allowed/out-missing');
      const outside = await h.createBatch(uri('input.jsonl'), 'allowed/out-outside');
      await h.add({ kind: 'plan', batchId: missing.id }, { attempts: 3 });
      await h.add({ kind: 'plan', batchId: outside.id }, { attempts: 3 });
      // Failed once, not retried: the batch carries the reason.
      for (const id of [missing.id, outside.id]) {
        expect(await h.finished(controlJobId.plan(id))).toBe('failed');
        expect((await h.queue.getJob(controlJobId.plan(id)))!.attemptsMade).toBe(1);
      }

      const a = (await h.store.get(missing.id))!;
      expect(a.status).toBe('failed');
      expect(a.errors[0]!.code).toBe('input_not_found');
      expect(a.errors[0]!.message).toContain(missing.input);
      expect(a.timestamps.failed_at).toBeGreaterThan(0);

      const b = (await h.store.get(outside.id))!;
      expect(b.status).toBe('failed');
      expect(b.errors[0]!.code).toBe('input_permission_denied');
      expect(b.errors[0]!.message).toContain(outside.input);
      expect(b.errors[0]!.message).toContain('allowed roots');
      expect(await h.store.openIds()).not.toContain(missing.id);
      expect(await h.store.openIds()).not.toContain(outside.id);
    } finally {
      await h.stop();
    }
  });

  it('leave a batch cancelled before its plan job ran where it is', async () => {
    const h = await harness();
    try {
      const spec = await h.createBatch(uri('input.jsonl'), 'cancelled-early');
      await h.store.transition(spec.id, ['validating'], 'cancelling', { stop: 'cancelled', cancelling_at: Date.now() });
      expect(await h.finished(await h.add({ kind: 'plan', batchId: spec.id }))).toBe('completed');
      const state = (await h.store.get(spec.id))!;
      expect(state.status).toBe('cancelling');
      expect(state.planned).toBe(false);
      await expect(createFileStorage().stat(batchFiles(spec.outputPrefix).plan)).rejects.toThrow(StorageError);
    } finally {
      await h.stop();
    }
  });

  it('stop planning when the batch is cancelled meanwhile', async () => {
    const base = createFileStorage();
    let started!: () => void;
    const reading = new Promise<void>((resolve) => (started = resolve));
    // The input's stat hangs until planning is aborted, as a slow bucket would.
    const slow: Storage = {
      ...base,
      stat: (u, o) =>
        u.endsWith('input.jsonl')
          ? new Promise((_resolve, reject) => {
              started();
              o?.signal?.addEventListener('abort', () => reject(new StorageError('cancelled', 'aborted', { uri: u })));
            })
          : base.stat(u, o),
    };
    const h = await harness({ storage: slow });
    try {
      const spec = await h.createBatch(uri('input.jsonl'), 'cancelled-meanwhile');
      const jobId = await h.add({ kind: 'plan', batchId: spec.id });
      await reading;
      await h.store.transition(spec.id, ['validating'], 'cancelling', { stop: 'cancelled', cancelling_at: Date.now() });
      expect(await h.finished(jobId)).toBe('completed');
      const job = await h.queue.getJob(jobId);
      expect(job!.returnvalue).toEqual({ outcome: 'left_validating', status: 'cancelling' });
      expect((await h.store.get(spec.id))!.status).toBe('cancelling');
    } finally {
      await h.stop();
    }
  });
});

describe('drain', () => {
  it('puts a job still running after the grace period back as delayed, without spending an attempt', async () => {
    const base = createFileStorage();
    let started!: () => void;
    const reading = new Promise<void>((resolve) => (started = resolve));
    const hanging: Storage = {
      ...base,
      stat: (u, o) =>
        new Promise((_resolve, reject) => {
          started();
          o?.signal?.addEventListener('abort', () => reject(new StorageError('cancelled', 'aborted', { uri: u })));
        }),
    };
    const h = await harness({ storage: hanging });
    try {
      const spec = await h.createBatch(uri('input.jsonl'), 'drained');
      const jobId = await h.add({ kind: 'plan', batchId: spec.id }, { attempts: 1 });
      await reading;
      await h.control.close(0);
      const job = (await h.queue.getJob(jobId))!;
      expect(await job.getState()).toBe('delayed');
      expect(job.attemptsMade).toBe(0);
      expect((await h.store.get(spec.id))!.status).toBe('validating');
    } finally {
      await h.stop();
    }
  });
});

describe('finalize jobs', () => {
  it('retry a failed attempt, and fail the batch naming the step when the last attempt fails', async () => {
    const base = createFileStorage();
    let concatFailures = 0;
    const flaky: Storage = {
      ...base,
      concat: (target, sources, o) => {
        if (target.endsWith('/plan.jsonl')) return base.concat(target, sources, o); // planning: not what fails here
        if (target.includes('/always-failing/') || concatFailures++ === 0) {
          return Promise.reject(new StorageError('unavailable', `${target}: 503 backend error`, { uri: target }));
        }
        return base.concat(target, sources, o);
      },
    };
    const h = await harness({ storage: flaky });
    try {
      const recovers = await h.createBatch(uri('input.jsonl'), 'recovers');
      const fails = await h.createBatch(uri('input.jsonl'), 'always-failing');
      for (const spec of [recovers, fails]) {
        expect(await h.finished(await h.add({ kind: 'plan', batchId: spec.id }))).toBe('completed');
        await h.store.transition(spec.id, ['in_progress'], 'cancelling', {
          stop: 'cancelled',
          cancelling_at: Date.now(),
        });
      }
      await h.add({ kind: 'finalize', batchId: recovers.id }, { attempts: 2 });
      await h.add({ kind: 'finalize', batchId: fails.id }, { attempts: 2 });
      expect(await h.finished(controlJobId.finalize(recovers.id))).toBe('completed');
      expect(await h.finished(controlJobId.finalize(fails.id))).toBe('failed');

      const ok = (await h.store.get(recovers.id))!;
      expect(ok.status).toBe('cancelled');
      expect(ok.counters).toMatchObject({ total: 10, completed: 0, failed: 10, not_run: 10 });

      const bad = (await h.store.get(fails.id))!;
      expect(bad.status).toBe('failed');
      expect(bad.errors[0]!.code).toBe('finalize_concat_output_failed');
      expect(bad.errors[0]!.message).toMatch(/step concat_output: .*503 backend error/);
      expect(await h.store.openIds()).not.toContain(fails.id);
    } finally {
      await h.stop();
    }
  });
});

describe('cron jobs', () => {
  const yaml = `
batch:
  schedules:
    - name: nightly
      cron: "0 2 * * *"
      input: file:///data/events/{date-1d}/
      model: default
`;

  it('launch the schedule once for the firing, at its fire time; drop an unknown schedule', async () => {
    const h = await harness({ yaml });
    try {
      const first = await h.queue.upsertJobScheduler(
        'nightly',
        { pattern: '0 2 * * *', immediately: true },
        { name: 'cron', data: { kind: 'cron', schedule: 'nightly' }, opts: keep },
      );
      expect(await h.finished(first.id!)).toBe('completed');
      expect(h.launches).toHaveLength(1);
      const { schedule, firedAt } = h.launches[0]!;
      expect(schedule.name).toBe('nightly');
      expect(schedule.input).toBe('file:///data/events/{date-1d}/');
      expect(firedAt).toBeInstanceOf(Date);
      // The firing's instant, as BullMQ named the job (`repeat:<scheduler>:<ms>`).
      expect(first.id).toBe(`repeat:nightly:${firedAt.getTime()}`);

      const unknown = await h.add({ kind: 'cron', schedule: 'removed-since' });
      expect(await h.finished(unknown)).toBe('completed');
      expect((await h.queue.getJob(unknown))!.returnvalue).toEqual({ outcome: 'unknown_schedule' });
      expect(h.launches).toHaveLength(1);
    } finally {
      await h.stop();
    }
  });
});
