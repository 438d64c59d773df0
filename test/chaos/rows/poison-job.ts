/**
 * Row: poison work. The row's workers run poison-worker.ts: the pool's sim backend wrapped so that
 * a batch line naming POISON makes the backend throw (for its whole micro-batch), and one naming
 * CRASH ends the worker process (exit 70), as a native backend's crash would. Dead workers are
 * replaced (a Deployment would), at most 8 times. Must hold: the poisoned chunks fail after
 * bounded attempts (the throw: the chunk job's `attempts`; the crash: BullMQ's stalled limit),
 * with the reason in the BullMQ failed set (failedReason, what Bull Board shows; read through
 * the producer's Bull Board API) and in the batch's error file; the other lines and the rest of the
 * load end normally, none lost, none twice.
 */
import { fileURLToPath } from 'node:url';
import { startChaosFleet } from '../fleet.ts';
import { SteadyLoad } from '../load.ts';
import { closeQueues, laneQueues } from '../queues.ts';
import type { ChaosRow } from '../types.ts';

const poisonWorker = fileURLToPath(new URL('../poison-worker.ts', import.meta.url));
const MAX_REPLACEMENTS = 8;

export const poisonJob: ChaosRow = {
  id: 'poison-job',
  fault: 'poison job (backend throws / crashes the process)',
  mustHold: "bounded attempts, then failed with the reason, visible in Bull Board and the batch's error file",
  async run(env) {
    const fleet = await startChaosFleet(env, { workers: 2, workerEntry: poisonWorker });
    const queues = laneQueues(fleet.admin, fleet.prefix);
    let replaced = 0;
    let stopKeeper = false;
    const keeper = (async () => {
      while (!stopKeeper) {
        for (const w of fleet.workers.filter((x) => x.proc.exitCode !== null)) {
          fleet.workers.splice(fleet.workers.indexOf(w), 1);
          if (replaced++ < MAX_REPLACEMENTS) await fleet.addWorker().catch((err: unknown) => env.log(String(err)));
        }
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    try {
      const load = await SteadyLoad.start(fleet, env, {
        batches: 3,
        linesPerBatch: 48,
        poisonLines: { 0: ['POISON'], 1: ['CRASH'] },
      });
      const tally = await load.settle(env.mode === 'short' ? 150_000 : 240_000);
      stopKeeper = true;
      await keeper;
      const failed = await queues.bulk.getFailed();
      const reasons = failed.map(
        (j) => `${j.id} after ${j.attemptsMade} attempts / ${j.stalledCounter ?? 0} stalls: ${j.failedReason}`,
      );
      // What Bull Board's own API answers for the failed chunks of bulk.<pool>, asked as its UI asks
      // (without jobsPerPage the page's range is NaN and the queue lists no jobs).
      const board = await fetch(
        `${fleet.url}/admin/queues/api/queues?activeQueue=${encodeURIComponent(queues.bulk.name)}&status=failed&page=1&jobsPerPage=50`,
      )
        .then(async (r) => (r.ok ? JSON.stringify(await r.json()) : `HTTP ${r.status}`))
        .catch((err: unknown) => String(err));
      const boardShows = failed.length > 0 && failed.every((j) => j.failedReason && board.includes(String(j.id)));
      const errorFor = (mark: string): string | undefined =>
        tally.batches.flatMap((b) => b.errorLines ?? []).find((e) => e.custom_id?.startsWith(mark))?.error?.message;
      const poisonError = errorFor('POISON');
      const crashError = errorFor('CRASH');
      const bounded = failed.every((j) => j.attemptsMade <= (j.opts.attempts ?? 1));
      const holds =
        tally.lost === 0 &&
        tally.duplicated === 0 &&
        failed.length >= 2 &&
        failed.every((j) => !!j.failedReason) &&
        boardShows &&
        bounded &&
        !!poisonError &&
        !!crashError;
      return {
        load: load.describe(),
        lost: tally.lost,
        duplicated: tally.duplicated,
        recoveryMs: null,
        holds,
        detail:
          `${failed.length} chunk jobs in the failed set (${reasons.join('; ') || 'none'}); Bull Board API lists them: ${boardShows ? 'yes' : `no (${board.slice(0, 120)})`}; ` +
          `error file: POISON line "${poisonError ?? 'absent'}", CRASH line "${crashError ?? 'absent'}"; ${replaced} workers replaced after crashes; ${tally.summary}`,
      };
    } finally {
      stopKeeper = true;
      await keeper;
      await closeQueues(queues);
      await fleet.stop();
    }
  },
};
