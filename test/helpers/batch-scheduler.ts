/**
 * A leading scheduler on an injected clock over a private prefix, and batches
 * planned into file:// as the producer would plan them: the fixture of the
 * admission and fairness integration tests. The scheduler's timers are slowed
 * to a minute by the caller's YAML so that only tick() moves anything.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { BatchStore, batchFiles } from '../../common/batch/batch-state.ts';
import { batchSpec } from './batch-spec.ts';
import { readPlanEntries, type PlanEntry } from '../../common/batch/plan-file.ts';
import type { Config } from '../../common/config.ts';
import { silentLogger } from '../../common/logger.ts';
import { createFileStorage } from '../../common/storage/index.ts';
import { batchControlQueue, queueName } from '../../common/topology.ts';
import { planToStorage } from '../../producer/batch/plan-to-storage.ts';
import { startScheduler, type RunningScheduler } from '../../scheduler/scheduler.ts';
import { deleteKeys, testConfig } from './fleet.ts';

export { batchSpec };

const storage = createFileStorage();

export interface SchedulerEnv {
  config: Config;
  store: BatchStore;
  /** `bulk.p` and the batch control queue. */
  bulk: Queue;
  control: Queue;
  clock: { now: number };
  scheduler: RunningScheduler;
  /** Stops the scheduler, closes the queues and deletes the prefix's keys. */
  close(): Promise<void>;
}

/** A fresh prefix (config from `yaml`, one pool `p`), its queues and a scheduler that has taken the lead. */
export async function tickedScheduler(redis: Redis, yaml: string): Promise<SchedulerEnv> {
  const config = testConfig(yaml);
  const prefix = config.redis.prefix;
  const clock = { now: Date.now() };
  const bulk = new Queue(queueName('bulk', 'p'), { connection: redis.duplicate(), prefix });
  const control = new Queue(batchControlQueue, { connection: redis.duplicate(), prefix });
  const scheduler = await startScheduler(config, { logger: silentLogger(), now: () => clock.now });
  expect(scheduler.epoch()).toBeGreaterThan(0);
  return {
    config,
    store: new BatchStore(redis, prefix),
    bulk,
    control,
    clock,
    scheduler,
    async close() {
      await scheduler.close();
      await bulk.close();
      await control.close();
      await deleteKeys(redis, prefix);
    },
  };
}

let seq = 0;

/**
 * An in_progress batch of `lines` sentiment requests in `dir`, planned two
 * lines per chunk into its own output prefix; ids are distinct and increase
 * with each call.
 */
export async function plannedBatch(
  env: SchedulerEnv,
  dir: string,
  lines: number,
  opts: { priority?: number; expiresAt?: number; tenant?: string } = {},
): Promise<{ id: string; entries: PlanEntry[] }> {
  const name = `b${seq++}`;
  const rows = Array.from({ length: lines }, (_, i) =>
    JSON.stringify({
      custom_id: `${name}-${i}`,
      method: 'POST',
      url: '/v1/infer',
      body: { input: { task: 'sentiment', text: `line ${i}` } },
    }),
  );
  await writeFile(join(dir, `${name}.jsonl`), `${rows.join('\n')}\n`);
  const outputPrefix = `${pathToFileURL(join(dir, `${name}-out`)).href}/`;
  const planUri = batchFiles(outputPrefix).plan;
  const input = pathToFileURL(join(dir, `${name}.jsonl`)).href;
  const plan = await planToStorage(storage, input, planUri, { endpoint: '/v1/infer', model: 'p', chunkLines: 2 });
  const spec = batchSpec(env.clock.now + seq, { input, outputPrefix, ...opts });
  await env.store.create(spec);
  await env.store.transition(spec.id, ['validating'], 'in_progress', {
    planned: 1,
    chunks: plan.chunks,
    total: plan.totalLines,
    in_progress_at: spec.createdAt,
  });
  const entries: PlanEntry[] = [];
  for await (const e of readPlanEntries(storage, planUri)) entries.push(e);
  return { id: spec.id, entries };
}
