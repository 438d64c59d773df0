/**
 * Row: a silent partition of a gpu-worker. The worker holding a batch chunk and a training rank
 * is stopped with SIGSTOP (its process sends nothing: no lock renewal, no heartbeat; its rank's
 * command, a child process, runs on) for 60 s (the short form: 8 s, still past lock + stalled
 * interval), then SIGCONT. Three workers, so another is free to take the work over. Must hold:
 * each job it held is free again within lock + stalled interval (2000 + 1000 ms, + 500 ms for
 * this row's polling) and run by another worker; when the stopped worker wakes, its late
 * completion is refused (BullMQ's lock token, the batch's once-only settlement, the rank's
 * settlement fenced by attempt) and nothing is written twice: every batch custom_id once in its
 * output and error files, each training (round, rank) record and round model once, each round's
 * model w = r.
 */
import type { Job } from 'bullmq';
import { startChaosFleet, pidOfWorker } from '../fleet.ts';
import { SteadyLoad } from '../load.ts';
import { closeQueues, findVictim, laneQueues, releasedAfter, waitFor } from '../queues.ts';
import type { ChaosRow } from '../types.ts';

const LOCK_MS = 2000;
const STALLED_MS = 1000;
const SLACK_MS = 500;

/** The distinct messages of warn/error log lines (pino level ≥ 40) in `output`. */
function complaints(output: string): string[] {
  const msgs = new Set<string>();
  for (const line of output.split('\n')) {
    try {
      const l = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((l.level ?? 0) >= 40 && l.msg) msgs.add(l.err?.message ? `${l.msg} (${l.err.message.slice(0, 80)})` : l.msg);
    } catch {
      // not a log line
    }
  }
  return [...msgs];
}

export const workerPartition: ChaosRow = {
  id: 'worker-partition',
  fault: 'worker silently partitioned (SIGSTOP 60 s mid chunk and rank, then SIGCONT)',
  mustHold: 'its work taken over within lock + stalled interval; its late completion refused; nothing written twice',
  async run(env) {
    const workers = 3;
    const fleet = await startChaosFleet(env, { workers, bulkKeepsSlots: true });
    const queues = laneQueues(fleet.admin, fleet.prefix);
    try {
      const load = await SteadyLoad.start(fleet, env, {
        lineTokens: 64,
        training: { ranks: 2, rounds: 3, sleepMs: 3000 },
      });
      const { pid: victimPid, held } = await findVictim(load, queues);
      const victim = fleet.workers.find((w) => w.pid === victimPid)!;
      const stopMs = env.mode === 'short' ? 8000 : 60_000;
      const stopAt = Date.now();
      victim.signal('SIGSTOP');
      env.log(
        `SIGSTOP worker ${victimPid} holding ${held.map((h) => `${h.lane}:${h.id}`).join(', ')} for ${stopMs / 1000} s`,
      );
      const released = await releasedAfter(queues, held, stopAt, Math.min(stopMs, 30_000));
      // Who runs each job now (BullMQ's processedBy is the worker id of the last run).
      const takers: string[] = [];
      await waitFor(
        async () => {
          takers.length = 0;
          for (const h of held) {
            const job = (await queues[h.lane].getJob(h.id)) as Job | undefined;
            const by = job?.processedBy ? pidOfWorker(job.processedBy) : undefined;
            takers.push(
              `${h.lane} ${by === undefined ? 'nobody' : by === victimPid ? 'the stopped worker' : `worker ${by}`}`,
            );
          }
          return takers.every((t) => !t.includes('nobody') && !t.includes('stopped'));
        },
        Math.max(1000, stopMs - (Date.now() - stopAt)),
      );
      const takenOver = takers.every((t) => !t.includes('nobody') && !t.includes('stopped'));
      await new Promise((r) => setTimeout(r, Math.max(0, stopAt + stopMs - Date.now())));
      const contAt = Date.now();
      const before = victim.output().length;
      victim.signal('SIGCONT');
      env.log(`SIGCONT worker ${victimPid} after ${((contAt - stopAt) / 1000).toFixed(1)} s`);
      const tally = await load.settle(env.mode === 'short' ? 150_000 : 240_000);
      await new Promise((r) => setTimeout(r, 2000));
      const late = complaints(victim.output().slice(before));
      const alive = victim.proc.exitCode === null && victim.proc.signalCode === null;
      const times = [...released.values()];
      const recoveryMs = times.some((t) => t === undefined) ? null : Math.max(...(times as number[]));
      const bound = LOCK_MS + STALLED_MS + SLACK_MS;
      const holds =
        tally.lost === 0 &&
        tally.duplicated === 0 &&
        recoveryMs !== null &&
        recoveryMs <= bound &&
        takenOver &&
        tally.training?.status === 'succeeded';
      return {
        load: load.describe(),
        lost: tally.lost,
        duplicated: tally.duplicated,
        recoveryMs,
        holds,
        detail:
          `stopped ${(stopMs / 1000).toFixed(0)} s holding ${held.map((h) => `${h.lane}:${h.id}`).join(', ')}; ` +
          `free again after ${[...released].map(([k, t]) => `${k.split(':')[0]} ${t === undefined ? 'never' : `${(t / 1000).toFixed(1)} s`}`).join(', ')} ` +
          `(bound: lock ${LOCK_MS} + stalled ${STALLED_MS} + ${SLACK_MS} ms polling); run by: ${takers.join(', ')}; ` +
          `after SIGCONT the worker ${alive ? 'runs on' : 'exited'} and logged: ${late.slice(0, 4).join('; ') || 'no warning'}; ${tally.summary}`,
      };
    } finally {
      await closeQueues(queues);
      await fleet.stop();
    }
  },
};
