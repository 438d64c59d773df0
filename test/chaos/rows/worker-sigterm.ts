/**
 * Row: SIGTERM to a gpu-worker holding a real-time request, a batch chunk and a training rank
 * (a spot instance's notice). The row's workers drain for 3 s (worker.shutdownGraceMs); batch
 * lines generate 160 tokens so a chunk outlasts the grace. Must hold: real-time requests it
 * holds finish (no real-time failure in the whole run); the chunk yields at a record (the worker
 * logs it) and goes back without spending an attempt; the rank is stopped and goes back without
 * spending an attempt (BullMQ's attemptsMade unchanged); then everything ends once.
 * The fleet keeps bulk on every slot (fleet.ts `bulkKeepsSlots`: a lax real-time objective and a
 * budget floor of every slot), so no budget cut moves chunks off the workers while the row waits
 * for one that holds a chunk and a rank at once.
 */
import type { Job } from 'bullmq';
import { startChaosFleet } from '../fleet.ts';
import { SteadyLoad } from '../load.ts';
import { closeQueues, findVictim, laneQueues, releasedAfter } from '../queues.ts';
import type { ChaosRow } from '../types.ts';

const GRACE_MS = 3000;

export const workerSigterm: ChaosRow = {
  id: 'worker-sigterm',
  fault: 'worker SIGTERM (spot notice)',
  mustHold: 'short work finishes; chunks yield at a record; ranks go back without spending an attempt',
  async run(env) {
    const fleet = await startChaosFleet(env, { workers: 2, workerGraceMs: GRACE_MS, bulkKeepsSlots: true });
    const queues = laneQueues(fleet.admin, fleet.prefix);
    try {
      const load = await SteadyLoad.start(fleet, env, {
        lineTokens: 160,
        linesPerBatch: 64,
        training: { ranks: 2, rounds: 3, sleepMs: 6000 },
      });
      const { pid: victimPid, held } = await findVictim(load, queues, { preferRtForMs: 30_000 });
      const attemptsBefore = new Map<string, number>();
      for (const h of held.filter((x) => x.lane !== 'rt')) {
        const job = (await queues[h.lane].getJob(h.id)) as Job | undefined;
        attemptsBefore.set(`${h.lane}:${h.id}`, job?.attemptsMade ?? -1);
      }
      const victim = fleet.workers.find((w) => w.pid === victimPid)!;
      const termAt = Date.now();
      victim.signal('SIGTERM');
      env.log(`SIGTERM worker ${victimPid} holding ${held.map((h) => `${h.lane}:${h.id}`).join(', ')}`);
      const released = await releasedAfter(
        queues,
        held.filter((h) => h.lane !== 'rt'),
        termAt,
        30_000,
      );
      await Promise.race([victim.exited, new Promise((r) => setTimeout(r, GRACE_MS + 15_000))]);
      const exitMs = victim.proc.exitCode !== null ? Date.now() - termAt : undefined;
      // Attempts right after the hand-back, before another run can finish (and count) one.
      const spent: string[] = [];
      for (const [key, before] of attemptsBefore) {
        const [lane, id] = key.split(/:(.*)/s) as ['bulk' | 'train', string];
        const job = (await queues[lane].getJob(id)) as Job | undefined;
        const state = job ? await job.getState() : 'gone';
        if (job && state !== 'completed' && job.attemptsMade !== before)
          spent.push(`${key} ${before}→${job.attemptsMade}`);
      }
      const log = victim.output();
      const chunkYielded = log.includes('chunk yielded (draining)');
      const rankBack = log.includes('stopped by the drain; back to the queue');
      const replacement = fleet.addWorker();
      await replacement;
      const tally = await load.settle(180_000);
      const times = [...released.values()];
      const recoveryMs = times.some((t) => t === undefined) ? null : Math.max(...(times as number[]));
      const rtFailed = tally.rt.failed + tally.rt.hung;
      const holds =
        tally.lost === 0 &&
        tally.duplicated === 0 &&
        rtFailed === 0 &&
        chunkYielded &&
        rankBack &&
        spent.length === 0 &&
        tally.training?.status === 'succeeded';
      return {
        load: load.describe(),
        lost: tally.lost,
        duplicated: tally.duplicated,
        recoveryMs,
        holds,
        detail:
          `drain ${GRACE_MS} ms; worker exited after ${exitMs === undefined ? 'not at all' : `${(exitMs / 1000).toFixed(1)} s`}; ` +
          `held ${held.map((h) => h.lane).join(', ')}; chunk yielded at a record: ${chunkYielded ? 'yes' : 'no'}; rank back to the queue: ${rankBack ? 'yes' : 'no'}; ` +
          `attempts spent: ${spent.length ? spent.join(', ') : 'none'}; real-time failures ${rtFailed}; back in the queue after ${[...released].map(([k, t]) => `${k.split(':')[0]} ${t === undefined ? 'never' : `${(t / 1000).toFixed(1)} s`}`).join(', ')}; ${tally.summary}`,
      };
    } finally {
      await closeQueues(queues);
      await fleet.stop();
    }
  },
};
