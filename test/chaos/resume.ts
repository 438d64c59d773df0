/**
 * When each role works again after a Redis fault, read from what each leaves in Redis or
 * answers, with no role restarted: the producer answers a real-time request with 2xx; each
 * gpu-worker writes a heartbeat; the scheduler renews its leader lease.
 */
import { leaderKeys, workersKey } from '../../common/topology.ts';
import type { ChaosFleet } from './fleet.ts';
import { POOL, pidOfWorker } from './fleet.ts';
import type { SteadyLoad } from './load.ts';

export interface Resumed {
  /** Until the answer of the first real-time request sent after `since` that got 2xx: its own generation time included. */
  producerMs?: number;
  workersMs?: number;
  schedulerMs?: number;
  /** Roles whose process exited meanwhile (a restart would hide a role that cannot resume). */
  exited: string[];
}

/** Polls (at most `timeoutMs`) until every role resumed after `since`; times from `since`. */
export async function waitResumed(
  fleet: ChaosFleet,
  load: SteadyLoad,
  since: number,
  leaseTtlMs: number,
  timeoutMs: number,
): Promise<Resumed> {
  const out: Resumed = { exited: [] };
  const deadline = Date.now() + timeoutMs;
  const workerPids = fleet.workers.map((w) => w.pid);
  while (
    Date.now() < deadline &&
    (out.producerMs === undefined || out.workersMs === undefined || out.schedulerMs === undefined)
  ) {
    const now = Date.now();
    if (out.producerMs === undefined) {
      const ok = load.rtSince(since).find((r) => r.status >= 200 && r.status < 300);
      if (ok) out.producerMs = ok.sentAt + ok.ms - since;
    }
    try {
      if (out.workersMs === undefined) {
        const raw = await fleet.admin.hgetall(workersKey(fleet.prefix, POOL));
        const fresh = new Set(
          Object.entries(raw)
            .filter(([, v]) => (JSON.parse(v) as { seenAt: number }).seenAt >= since)
            .map(([id]) => pidOfWorker(id)),
        );
        if (workerPids.every((p) => fresh.has(p))) out.workersMs = now - since;
      }
      if (out.schedulerMs === undefined) {
        const ttl = await fleet.admin.pttl(leaderKeys(fleet.prefix).lease);
        if (ttl > leaseTtlMs - (now - since)) out.schedulerMs = now - since;
      }
    } catch {
      // Redis not back yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const p of [fleet.producer, ...fleet.schedulers, ...fleet.workers]) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) out.exited.push(`${p.role} ${p.pid}`);
  }
  return out;
}

export const seconds = (ms: number | undefined): string =>
  ms === undefined ? 'not within the limit' : `${(ms / 1000).toFixed(1)} s`;
