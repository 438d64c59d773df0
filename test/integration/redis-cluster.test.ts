/**
 * The same code on a Redis Cluster: queues, reply inbox, heartbeats, leader
 * lease and fenced writes all keep their multi-key operations inside one hash
 * slot, so a real-time request and the scheduler work without CROSSSLOT.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { startScheduler } from '../../scheduler/scheduler.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { hasRedisBinaries, startLocalCluster, type LocalCluster } from '../helpers/local-cluster.ts';

const binaries = hasRedisBinaries();
let cluster: LocalCluster | undefined;
let fleet: TestFleet | undefined;

beforeAll(async () => {
  if (!binaries) return;
  cluster = await startLocalCluster();
  fleet = await startFleet({
    yaml: 'pools:\n  - name: p\n    backend: echo\n',
    env: { REDIS_URL: cluster.url, REDIS_CLUSTER: 'true' },
  });
}, 60_000);
afterAll(async () => {
  await fleet?.producer.close(0);
  await Promise.all(fleet?.workers.map((w) => w.close(0)) ?? []);
  fleet?.redis.disconnect();
  await cluster?.stop();
});

describe.skipIf(!binaries)('on a 3-master Redis Cluster', () => {
  it('answers real-time requests, streamed and not', async () => {
    const post = (body: unknown) =>
      fetch(`${fleet!.producer.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const messages = [{ role: 'user', content: 'one two three' }];
    const plain = await post({ model: 'p', messages });
    expect(plain.status).toBe(200);
    expect(
      ((await plain.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content,
    ).toBe('one two three');
    const streamed = await post({ model: 'p', messages, stream: true });
    expect(streamed.status).toBe(200);
    expect(await streamed.text()).toContain('data: [DONE]');
    const ready = await fetch(`${fleet!.producer.url}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('elects a scheduler leader and runs its fenced bookkeeping', async () => {
    const scheduler = await startScheduler(fleet!.config, { logger: silentLogger() });
    expect(scheduler.epoch()).toBeGreaterThan(0);
    await scheduler.tick();
    expect(scheduler.epoch()).toBeGreaterThan(0);
    await scheduler.close();
  });
});
