/**
 * Cron triggers: the leader makes the BullMQ job schedulers on the control
 * queue match its config, and BullMQ fires `cron` jobs from them.
 */
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchSchedule } from '../../common/config.ts';
import { controlJobSchema, type ControlJob } from '../../common/contracts/batch.ts';
import { silentLogger } from '../../common/logger.ts';
import { batchControlQueue } from '../../common/topology.ts';
import { syncCronSchedules } from '../../scheduler/cron-schedules.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { deleteKeys, REDIS_URL, testConfig } from '../helpers/fleet.ts';

const base = `
scheduler: { leaseTtlMs: 60000, renewEveryMs: 60000 }
pools: [{ name: p, backend: echo }]
`;
const withoutSchedule = `${base}
batch: { admitEveryMs: 60000 }
`;
const withSchedule = `${base}
batch:
  admitEveryMs: 60000
  schedules:
    - name: every-second
      cron: '*/1 * * * * *'
      tz: Europe/Paris
      input: 'file:///tmp/events/{date}/'
      model: p
`;

const config = testConfig(withSchedule);
const prefix = config.redis.prefix;
let redis: Redis;
let control: Queue;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(() => {
  redis = new Redis(REDIS_URL);
  control = new Queue(batchControlQueue, { connection: redis.duplicate(), prefix });
});
afterAll(async () => {
  for (const c of cleanup.splice(0)) await c();
  await control.close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

describe('cron schedules', () => {
  it('upserts the configured schedulers as leader, fires cron jobs, and removes unconfigured ones', async () => {
    const scheduler = await startScheduler(config, { logger: silentLogger() });
    expect(scheduler.epoch()).toBeGreaterThan(0);
    const stored = await control.getJobSchedulers(0, -1);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      key: 'every-second',
      name: 'cron',
      pattern: '*/1 * * * * *',
      tz: 'Europe/Paris',
    });
    await scheduler.tick(); // already synced for this epoch: nothing changes
    expect(await control.getJobSchedulersCount()).toBe(1);

    // BullMQ fires it: a worker sees a cron job within about a second.
    const workerRedis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const fired = await new Promise<ControlJob>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no cron job within 3 s')), 3000);
      const worker = new Worker(
        batchControlQueue,
        async (job: Job) => {
          clearTimeout(timer);
          resolve(controlJobSchema.parse(job.data));
          return Promise.resolve();
        },
        { connection: workerRedis, prefix },
      );
      cleanup.push(async () => {
        await worker.close();
        workerRedis.disconnect();
      });
    });
    expect(fired).toEqual({ kind: 'cron', schedule: 'every-second' });
    for (const c of cleanup.splice(0)) await c();
    await scheduler.close();

    // A restart with the schedule gone from the config removes it.
    const restarted = await startScheduler(testConfig(withoutSchedule, { INTERFLEET_PREFIX: prefix }), {
      logger: silentLogger(),
    });
    expect(restarted.epoch()).toBeGreaterThan(0);
    expect(await control.getJobSchedulers(0, -1)).toEqual([]);
    await restarted.close();
  });

  it('reports a schedule BullMQ refuses and still syncs the others', async () => {
    const queue = new Queue(batchControlQueue, { connection: redis.duplicate(), prefix: `${prefix}:sync` });
    const schedule = (name: string, cron: string): BatchSchedule => ({
      name,
      cron,
      tz: 'UTC',
      input: 'file:///tmp/in/',
      endpoint: '/v1/infer',
      model: 'p',
      completionWindow: '24h',
      priority: 0,
      tenant: 'default',
    });
    const r = await syncCronSchedules(
      queue,
      [schedule('bad', 'not a cron'), schedule('good', '0 3 * * *')],
      silentLogger(),
    );
    expect(r.upserted).toEqual(['good']);
    expect(r.failed.map((f) => f.name)).toEqual(['bad']);
    expect((await queue.getJobSchedulers(0, -1)).map((s) => s.key)).toEqual(['good']);
    await queue.close();
    await deleteKeys(redis, `${prefix}:sync`);
  });
});
