/**
 * Deadlines, cancellation and graceful drain on the real queues: a worker
 * never starts an expired request, aborts one whose caller left, and finishes
 * in-flight work when asked to stop, within its grace period.
 */
import { Queue } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { REALTIME_JOB_NAME, replySchema, type RealtimeJob } from '../../common/contracts/realtime.ts';
import { inboxKey, queueName } from '../../common/topology.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { slowBackend } from '../helpers/test-backends.ts';
import { until } from '../helpers/until.ts';

const yaml = 'pools:\n  - name: p\n    backend: echo\n';
let fleet: TestFleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

const infer = (f: TestFleet, timeoutMs = 10_000, signal?: AbortSignal) =>
  fetch(`${f.producer.url}/v1/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'p', input: { task: 'sentiment', text: 'x' }, timeout_ms: timeoutMs }),
    signal,
  });

describe('real-time lifecycle', () => {
  it('never starts a request whose deadline has passed', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    fleet = await startFleet({ yaml, backend: () => slowBackend(0, seen) });
    const queue = new Queue(queueName('rt', 'p'), { connection: fleet.redis.duplicate(), prefix: fleet.prefix });
    const inbox = inboxKey(fleet.prefix, 'test');
    const now = Date.now();
    const job: RealtimeJob = {
      requestId: 'expired-1',
      replyTo: inbox,
      deadlineAt: now - 1,
      enqueuedAt: now - 100,
      stream: false,
      input: { task: 'sentiment', text: 'late' },
    };
    await queue.add(REALTIME_JOB_NAME, job, { jobId: job.requestId });
    const raw = await until(async () => (await fleet!.redis.lpop(inbox)) ?? undefined);
    expect(replySchema.parse(JSON.parse(raw))).toMatchObject({ i: 'expired-1', k: 'error', code: 'deadline_exceeded' });
    const failed = await until(async () =>
      (await queue.getJobState('expired-1')) === 'failed' ? queue.getJob('expired-1') : undefined,
    );
    expect(failed?.failedReason).toMatch(/^deadline_exceeded/);
    expect(seen.started).toEqual([]);
    await queue.close();
  });

  it.each([
    ['one fetcher', yaml],
    ['three fetchers', `${yaml}    lanes: { realtime: { concurrency: 4, fetchers: 3 } }\n`],
  ])('aborts a running request when its caller disconnects (%s)', async (_name, poolYaml) => {
    const seen = { started: [] as string[], aborted: 0 };
    fleet = await startFleet({ yaml: poolYaml, backend: () => slowBackend(10_000, seen) });
    const controller = new AbortController();
    const pending = infer(fleet, 20_000, controller.signal);
    await until(async () => (seen.started.length === 1 ? true : undefined));
    controller.abort();
    await expect(pending).rejects.toThrow();
    await until(async () => (seen.aborted === 1 ? true : undefined));
  });

  it('finishes in-flight requests when drained, and takes no new ones', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    fleet = await startFleet({ yaml, backend: () => slowBackend(400, seen) });
    const inFlight = infer(fleet);
    await until(async () => (seen.started.length === 1 ? true : undefined));
    const closing = fleet.workers[0]!.close(5000);
    expect(fleet.workers[0]!.state()).toBe('draining');
    // A job fetched in the instant close() began is still run (BullMQ moved it to
    // active); anything arriving after that must wait for another worker.
    await new Promise((r) => setTimeout(r, 100));
    const late = infer(fleet, 800);
    const res = await inFlight;
    expect(res.status).toBe(200);
    await closing;
    expect(fleet.workers[0]!.state()).toBe('closed');
    expect((await late).status).toBe(504);
    expect(seen.started).toHaveLength(1);
  });

  it('aborts in-flight work with 503 when the grace period runs out', async () => {
    const seen = { started: [] as string[], aborted: 0 };
    fleet = await startFleet({ yaml, backend: () => slowBackend(30_000, seen) });
    const inFlight = infer(fleet);
    await until(async () => (seen.started.length === 1 ? true : undefined));
    const started = Date.now();
    await fleet.workers[0]!.close(200);
    expect(Date.now() - started).toBeLessThan(3000);
    const res = await inFlight;
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable');
  });
});
