/**
 * What the chaos rows read of the BullMQ queues: which jobs a worker process holds (BullMQ
 * records the Worker's name, the gpu-worker's id `<host>-<pid>-<hex>`, as `processedBy`), and
 * when another worker could have them again.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { queueName } from '../../common/topology.ts';
import { pidOfWorker, POOL } from './fleet.ts';
import type { TrainingJob } from './load.ts';

export type Lane = 'rt' | 'bulk' | 'train';

export interface HeldJob {
  lane: Lane;
  id: string;
  processedOn: number;
}

export function laneQueues(admin: Redis, prefix: string): Record<Lane, Queue> {
  const q = (kind: Lane): Queue => new Queue(queueName(kind, POOL), { connection: admin, prefix });
  return { rt: q('rt'), bulk: q('bulk'), train: q('train') };
}

export async function closeQueues(queues: Record<Lane, Queue>): Promise<void> {
  await Promise.all(Object.values(queues).map((q) => q.close()));
}

/** The active jobs of `lanes` that the worker process `pid` holds. */
export async function heldBy(queues: Record<Lane, Queue>, pid: number, lanes: Lane[]): Promise<HeldJob[]> {
  const held: HeldJob[] = [];
  for (const lane of lanes) {
    for (const job of await queues[lane].getActive()) {
      if (job?.id && job.processedBy && pidOfWorker(job.processedBy) === pid) {
        held.push({ lane, id: job.id, processedOn: job.processedOn ?? 0 });
      }
    }
  }
  return held;
}

/**
 * Polls until every job in `held` is released (back in a waiting state, run again or finished
 * elsewhere); the time from `since` until each was seen released, in ms (`timeoutMs`: undefined).
 */
export async function releasedAfter(
  queues: Record<Lane, Queue>,
  held: HeldJob[],
  since: number,
  timeoutMs: number,
): Promise<Map<string, number | undefined>> {
  const out = new Map<string, number | undefined>();
  const deadline = Date.now() + timeoutMs;
  while (out.size < held.length && Date.now() < deadline) {
    for (const h of held.filter((x) => !out.has(`${x.lane}:${x.id}`))) {
      const job = await queues[h.lane].getJob(h.id);
      const state = job ? await job.getState() : 'unknown';
      const rerun = job?.processedOn !== undefined && job.processedOn > h.processedOn;
      if (state !== 'active' || rerun) out.set(`${h.lane}:${h.id}`, Date.now() - since);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const h of held) if (!out.has(`${h.lane}:${h.id}`)) out.set(`${h.lane}:${h.id}`, undefined);
  return out;
}

/** Waits until `probe` holds, polling every 200 ms; false after `timeoutMs`. */
export async function waitFor(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/**
 * The worker a row hits: one that runs a rank of the load's training job and holds a chunk too,
 * and a real-time request as well when `preferRtForMs` is set and one comes within that time.
 * Throws when no worker holds them at once within 90 s.
 */
export async function findVictim(
  load: { training(): Promise<TrainingJob | undefined> },
  queues: Record<Lane, Queue>,
  opts: { preferRtForMs?: number } = {},
): Promise<{ pid: number; held: HeldJob[] }> {
  const lanes: Lane[] = opts.preferRtForMs === undefined ? ['bulk', 'train'] : ['rt', 'bulk', 'train'];
  const preferRtUntil = Date.now() + (opts.preferRtForMs ?? 0);
  let victim: { pid: number; held: HeldJob[] } | undefined;
  await waitFor(async () => {
    const job = await load.training();
    for (const rank of job?.ranks.filter((r) => r.status === 'running') ?? []) {
      const pid = pidOfWorker(rank.worker);
      const held = await heldBy(queues, pid, lanes);
      const rtToo = held.some((x) => x.lane === 'rt') || Date.now() > preferRtUntil;
      if (rtToo && held.some((x) => x.lane === 'bulk') && held.some((x) => x.lane === 'train')) {
        victim = { pid, held };
        return true;
      }
    }
    return false;
  }, 90_000);
  if (!victim) throw new Error('no worker held a chunk and a rank at once within 90 s');
  return victim;
}
