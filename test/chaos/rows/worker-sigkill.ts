/**
 * Row: a gpu-worker killed with SIGKILL while it holds a real-time request, a batch chunk and a
 * training rank. The row's pool sets small intervals (fleet.ts): bulk and training locks of
 * 2000 ms checked for stalls every 1000 ms, so every job the dead worker held must be free again
 * within lock + stalled interval = 3 s (+0.5 s for this row's polling and the check's timer). A
 * new worker starts in its place (a Deployment replaces the pod), and every accepted piece of
 * work must end once, none lost.
 * The fleet keeps bulk on every slot (fleet.ts `bulkKeepsSlots`: a lax real-time objective and a
 * budget floor of every slot), so no budget cut moves chunks off the workers while the row waits
 * for one that holds a chunk and a rank at once.
 */
import { startChaosFleet } from '../fleet.ts';
import { SteadyLoad } from '../load.ts';
import { closeQueues, findVictim, laneQueues, releasedAfter } from '../queues.ts';
import type { ChaosRow } from '../types.ts';

const LOCK_MS = 2000;
const STALLED_MS = 1000;
const SLACK_MS = 500;

export const workerSigkill: ChaosRow = {
  id: 'worker-sigkill',
  fault: 'worker SIGKILL mid real-time, mid chunk, mid training rank',
  mustHold: '0 lost, 0 duplicate result records, recovery within lock + stalled interval',
  short: true,
  async run(env) {
    const fleet = await startChaosFleet(env, { workers: 2, bulkKeepsSlots: true });
    const queues = laneQueues(fleet.admin, fleet.prefix);
    try {
      const load = await SteadyLoad.start(fleet, env);
      // The victim: the worker of a running rank that also holds a chunk (and real-time, within 30 s).
      const { pid: victimPid, held } = await findVictim(load, queues, { preferRtForMs: 30_000 });
      const victim = fleet.workers.find((w) => w.pid === victimPid)!;
      const killAt = Date.now();
      await victim.kill();
      env.log(`SIGKILL worker ${victimPid} holding ${held.map((h) => `${h.lane}:${h.id}`).join(', ')}`);
      const replacement = fleet.addWorker();
      const released = await releasedAfter(
        queues,
        held.filter((h) => h.lane !== 'rt'),
        killAt,
        30_000,
      );
      await replacement;
      const tally = await load.settle(env.mode === 'short' ? 120_000 : 180_000);
      // Real-time jobs are not handed over: the caller's deadline answers them (counted in the tally).
      const times = [...released].filter(([k]) => !k.startsWith('rt:')).map(([, t]) => t);
      const recoveryMs = times.some((t) => t === undefined) ? null : Math.max(...(times as number[]));
      const bound = LOCK_MS + STALLED_MS + SLACK_MS;
      const heldRt = held.filter((h) => h.lane === 'rt').length;
      const holds =
        tally.lost === 0 &&
        tally.duplicated === 0 &&
        recoveryMs !== null &&
        recoveryMs <= bound &&
        tally.training?.status === 'succeeded';
      return {
        load: load.describe(),
        lost: tally.lost,
        duplicated: tally.duplicated,
        recoveryMs,
        holds,
        detail:
          `killed worker held ${held.length} jobs (${heldRt} rt, ${held.filter((h) => h.lane === 'bulk').length} chunk, ${held.filter((h) => h.lane === 'train').length} rank); ` +
          `each free again after ${[...released].map(([k, t]) => `${k.split(':')[0]} ${t === undefined ? 'never' : `${(t / 1000).toFixed(1)} s`}`).join(', ')} ` +
          `(bound: lock ${LOCK_MS} + stalled ${STALLED_MS} + ${SLACK_MS} ms polling); ${tally.summary}`,
      };
    } finally {
      await closeQueues(queues);
      await fleet.stop();
    }
  },
};
