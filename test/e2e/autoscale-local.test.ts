/**
 * `npm start`'s launcher as real processes (launcher, producer, scheduler and
 * forked gpu-workers on the `sim` backend) with the `local` actuator, min 1,
 * max 4: a burst of real-time chats through the official `openai` client and
 * a batch at the same time scale the pool up; when the burst ends it scales
 * back to one worker, draining the ones it stops. Every request is answered
 * (or refused with 429/503 and Retry-After), every batch custom_id is in the
 * output exactly once, and Ctrl-C (SIGINT) stops everything cleanly.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schedulerExplainSchema, type AutoscaleExplanation } from '../../common/contracts/explain.ts';
import { deleteKeys, REDIS_URL } from '../helpers/fleet.ts';
import { startLauncher, type LauncherProcess } from '../helpers/launcher-process.ts';
import { until } from '../helpers/until.ts';

// Short windows so that the whole cycle fits a test; the decision logic is the production one.
const config = `
scheduler: { renewEveryMs: 200, leaseTtlMs: 3000, metricsPort: -1 }
worker: { heartbeatMs: 500, heartbeatTtlMs: 2000, shutdownGraceMs: 5000 }
batch: { chunkLines: 10, admitEveryMs: 200 }
autoscaler: { everyMs: 500 }
log: { level: warn }
pools:
  - name: default
    backend: sim
    firstTokenObjectiveMs: 1000
    sim: { maxNumSeqs: 8 }
    lanes: { realtime: { concurrency: 8 }, bulk: { concurrency: 1 } }
    autoscale:
      minReplicas: 1
      maxReplicas: 4
      startupMs: 2000
      capacityHint: 300
      realtime: { forecastWindowMs: 10000 }
      scaleUp: { stabilizationMs: 0, maxStep: 4, periodMs: 500 }
      scaleDown: { stabilizationMs: 4000, maxStep: 4, periodMs: 500 }
      staleAfterMs: 5000
`;

let dir: string;
let launcher: LauncherProcess | undefined;
let url: string;
const prefix = `e2e-autoscale-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'interfleet-autoscale-'));
  await writeFile(join(dir, 'config.yaml'), config);
  launcher = await startLauncher({ INTERFLEET_CONFIG: join(dir, 'config.yaml'), INTERFLEET_PREFIX: prefix, REDIS_URL });
  url = launcher.url;
}, 90_000);

afterAll(async () => {
  await launcher?.kill();
  const redis = new Redis(REDIS_URL);
  await deleteKeys(redis, prefix);
  redis.disconnect();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function autoscaleRecord(): Promise<AutoscaleExplanation | null> {
  const res = await fetch(`${url}/v1/scheduler/explain?pool=default`);
  const body = schedulerExplainSchema.parse(await res.json());
  return body.pools[0]?.autoscale ?? null;
}

describe('npm start autoscales its local workers', () => {
  it('scales 1 → more under a burst and a batch, answers every request, runs every custom_id once, and scales back to 1', async () => {
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const start = await autoscaleRecord();
    expect(start?.replicas).toMatchObject({ desired: 1, min: 1, max: 4 });
    expect(start?.actuator).toBe('local');

    // The batch: 400 chats, in file:// storage, submitted as the burst begins.
    const ids = Array.from({ length: 400 }, (_, i) => `b${i}`);
    const input = join(dir, 'input.jsonl');
    const lines = ids.map((id) =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'default', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 16 },
      }),
    );
    await writeFile(input, `${lines.join('\n')}\n`);
    const batch = await openai.batches.create({
      input_file_id: pathToFileURL(input).href,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    } as unknown as OpenAI.Batches.BatchCreateParams);

    // Watch the decisions while the burst runs.
    let maxDesired = 0;
    let maxReady = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const a = await autoscaleRecord().catch(() => null);
        if (a) {
          maxDesired = Math.max(maxDesired, a.replicas.desired);
          maxReady = Math.max(maxReady, a.replicas.ready);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    // The burst: 48 clients in a loop for 12 s (one replica has 8 real-time slots).
    const tally = { ok: 0, refused: 0, refusedWithoutRetryAfter: 0, failed: [] as string[] };
    const end = Date.now() + 12_000;
    await Promise.all(
      Array.from({ length: 48 }, async () => {
        while (Date.now() < end) {
          try {
            const r = await openai.chat.completions.create({
              model: 'default',
              messages: [{ role: 'user', content: 'Once upon a time' }],
              max_tokens: 64,
            });
            expect(r.choices[0]?.message.content).toBeTruthy();
            tally.ok++;
          } catch (err) {
            const e = err as InstanceType<typeof OpenAI.APIError>;
            if (e.status === 429 || e.status === 503) {
              tally.refused++;
              if (!e.headers?.get('retry-after')) tally.refusedWithoutRetryAfter++;
              await new Promise((r) => setTimeout(r, 200));
            } else tally.failed.push(String(e.message));
          }
        }
      }),
    );
    expect(tally.failed).toEqual([]);
    expect(tally.refusedWithoutRetryAfter).toBe(0);
    expect(tally.ok).toBeGreaterThan(40);

    // Back down to one worker once the burst is over (stabilization 4 s), with the batch done.
    let last = '';
    const done = await until(async () => {
      await new Promise((r) => setTimeout(r, 250));
      const b = await openai.batches.retrieve(batch.id);
      const a = await autoscaleRecord();
      last = `batch ${b.status} ${JSON.stringify(b.request_counts)}, replicas ${JSON.stringify(a?.replicas)} (${a?.decision.reason})`;
      return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) &&
        a?.replicas.desired === 1 &&
        a.replicas.ready === 1
        ? { b, a }
        : undefined;
    }, 90_000).catch((err: unknown) => {
      throw new Error(`not back to 1 replica with the batch done: ${last}`, { cause: err });
    });
    watching = false;
    await watcher;
    expect(maxDesired).toBeGreaterThanOrEqual(3);
    expect(maxReady).toBeGreaterThanOrEqual(2);
    expect(done.a.history.some((h) => h.desired > h.previous)).toBe(true);
    expect(done.a.history.some((h) => h.desired < h.previous)).toBe(true);

    // Every custom_id exactly once, none failed, although workers were stopped during the batch.
    const b = done.b as typeof done.b & { output_file?: string; error_file?: string };
    expect(b.status).toBe('completed');
    const seen = new Map<string, number>();
    const local = (uri: string): string | URL => (uri.startsWith('file://') ? new URL(uri) : uri);
    const out = (await readFile(local(b.output_file!), 'utf8')).split('\n').filter(Boolean);
    const errs = (await readFile(local(b.error_file!), 'utf8')).split('\n').filter(Boolean);
    for (const l of out) {
      const id = (JSON.parse(l) as { custom_id: string }).custom_id;
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    expect(errs).toEqual([]);
    expect([...seen].filter(([, n]) => n !== 1)).toEqual([]);
    expect(seen.size).toBe(ids.length);

    const firstDown = done.a.history.find((h) => h.desired < h.previous)!.at;
    const batchDoneAt = (done.b.completed_at ?? 0) * 1000;
    console.log(
      `autoscale-local: ${tally.ok} chats answered, ${tally.refused} refused with Retry-After; desired up to ${maxDesired}, ready up to ${maxReady}; batch of ${ids.length} ${b.status} ${batchDoneAt > firstDown ? 'after' : 'before'} the first scale-in; history ${done.a.history.map((h) => `${h.previous}→${h.desired} ${h.reason}`).join(', ')}`,
    );

    // Ctrl-C drains and stops every process.
    launcher!.proc.kill('SIGINT');
    expect(await launcher!.exited).toBe(0);
  }, 180_000);
});
