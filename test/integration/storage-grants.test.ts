/**
 * Per-tenant gs:// prefixes, through the batch service with a principal set
 * directly (API keys set `request.principal` elsewhere): a key granted
 * `gs://<bucket>/{tenant}/` creates batches under its own tenant's prefix,
 * which the producer then plans from the GCS stand-in, and is refused (403,
 * no batch, no request to storage) another tenant's prefix, a bucket it was
 * not granted, and a prefix that only starts like its own.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../common/auth/principal.ts';
import { BatchStore } from '../../common/batch/batch-state.ts';
import { batchCreateBodySchema } from '../../common/contracts/batch-api.ts';
import { FleetError } from '../../common/errors.ts';
import { silentLogger } from '../../common/logger.ts';
import { closeRedis, createRedis, waitForRedis, type RedisClient } from '../../common/redis.ts';
import { createStorage } from '../../common/storage/index.ts';
import { batchControlQueue } from '../../common/topology.ts';
import { BatchService } from '../../producer/batch/batch-service.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { startStandIn, type StandIn } from '../helpers/storage/stand-in.ts';
import { until } from '../helpers/until.ts';

process.env.METADATA_SERVER_DETECTION = 'none';

const bucket = `grants-${randomUUID().slice(0, 8)}`;
const otherBucket = `other-${randomUUID().slice(0, 8)}`;
const acme: Pick<Principal, 'tenant' | 'storage'> = {
  tenant: 'acme',
  storage: { prefixes: [`gs://${bucket}/{tenant}/`] },
};

let standIn: StandIn;
let fleet: TestFleet;
let redis: RedisClient;
let queue: Queue;
let service: BatchService;
let store: BatchStore;

const line = (id: string) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/infer', body: { input: 'x' } });
const body = (input: string, output?: string) =>
  batchCreateBodySchema.parse({
    input_file: input,
    endpoint: '/v1/infer',
    ...(output !== undefined && { output_location: output }),
  });
const total = async () => Object.values(await standIn.counts()).reduce((a, b) => a + b, 0);
/** Requests served so far, once none has come in for 300 ms (the first test's planning tidies up after itself). */
async function settledTotal(): Promise<number> {
  for (let last = await total(); ;) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await total();
    if (now === last) return now;
    last = now;
  }
}

beforeAll(async () => {
  standIn = await startStandIn('gcs', { buckets: [bucket, otherBucket] });
  // The producer's control worker plans every batch queued on the control queue, from the stand-in.
  fleet = await startFleet({
    yaml: `pools: [{ name: tiny, backend: echo }]\nstorage: { gcs: { apiEndpoint: "${standIn.url}", auth: none } }`,
    workers: 0,
  });
  const storage = createStorage(fleet.config.storage);
  for (const tenant of ['acme', 'globex', 'acme-evil']) {
    await storage.writeIfAbsent(`gs://${bucket}/${tenant}/in.jsonl`, Buffer.from(`${line('a')}\n${line('b')}\n`));
  }
  redis = createRedis(fleet.config.redis, 'command');
  await waitForRedis(redis, 5000);
  queue = new Queue(batchControlQueue, { connection: redis, prefix: fleet.prefix });
  store = new BatchStore(fleet.redis, fleet.prefix);
  service = new BatchService({ config: fleet.config, redis, store, controlQueue: queue, logger: silentLogger() });
}, 60_000);
afterAll(async () => {
  await queue?.close();
  if (redis) await closeRedis(redis);
  await fleet?.stop();
  await standIn?.close();
});

describe('a key granted gs://<bucket>/{tenant}/', () => {
  it('creates a batch under its own prefix, which is then planned from storage', async () => {
    const created = await service.create(body(`gs://${bucket}/acme/in.jsonl`), 'api', undefined, acme);
    expect(created.spec.outputPrefix).toBe(`gs://${bucket}/acme/${created.spec.id}/`);
    const planned = await until(async () => {
      const s = await store.get(created.spec.id);
      return s?.status === 'in_progress' && s.planned ? s : undefined;
    }, 15_000);
    expect(planned.counters.total).toBe(2);
  });

  it.each([
    ["another tenant's prefix", `gs://${bucket}/globex/in.jsonl`, undefined, 'input_file'],
    ['a prefix that only starts like its own', `gs://${bucket}/acme-evil/in.jsonl`, undefined, 'input_file'],
    ['a bucket not granted', `gs://${otherBucket}/acme/in.jsonl`, undefined, 'input_file'],
    [
      "an output under another tenant's prefix",
      `gs://${bucket}/acme/in.jsonl`,
      `gs://${bucket}/globex/out/`,
      'output_location',
    ],
  ])('is refused %s: 403 naming the field, no batch, no request to storage', async (_what, input, output, param) => {
    const before = { requests: await settledTotal(), batches: (await store.listIds(100)).ids.length };
    const err = await service.create(body(input, output), 'api', undefined, acme).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FleetError);
    expect(err).toMatchObject({ code: 'forbidden', status: 403, param });
    expect((err as Error).message).toContain(`is outside the storage this key may`);
    expect((err as Error).message).toContain(`gs://${bucket}/acme/`);
    expect((await store.listIds(100)).ids.length).toBe(before.batches);
    expect(await total()).toBe(before.requests);
  });

  it("keeps file:// to the key's own folder when the key names file:// prefixes", async () => {
    const root = fleet.config.storage.file.roots[0]!;
    const acmeFiles = { ...acme, storage: { prefixes: [`gs://${bucket}/{tenant}/`, `file://${root}/{tenant}/`] } };
    const err = await service
      .create(body(`file://${root}/globex/in.jsonl`), 'api', undefined, acmeFiles)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'forbidden', status: 403, param: 'input_file' });
    expect((err as Error).message).toContain(`file://${root}/acme/`);
  });
});
