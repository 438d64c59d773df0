/**
 * Row: the scheduler leader killed with SIGKILL while it admits batch chunks, a standby replica
 * running beside it. The row's lease is 2000 ms, renewed every 250 ms. Must hold: the standby
 * leads within the lease (+1 s for its renewal period and this row's polling), and no chunk
 * is admitted twice: every replica logs each admission as a range of chunk indices per batch
 * ("admitted chunks", from..to), and no index may be in two ranges; the batches end with every
 * line once.
 */
import { startChaosFleet } from '../fleet.ts';
import { SteadyLoad } from '../load.ts';
import { waitFor } from '../queues.ts';
import type { ChaosRow } from '../types.ts';

const LEASE_MS = 2000;
const SLACK_MS = 1000;

/** Chunk indices admitted more than once, per batch, from the replicas' JSON log lines. */
function admittedTwice(outputs: string[]): { admissions: number; twice: number } {
  const seen = new Map<string, number>();
  let admissions = 0;
  for (const out of outputs) {
    for (const line of out.split('\n')) {
      if (!line.includes('"admitted chunks"')) continue;
      const { batchId, from, to } = JSON.parse(line) as { batchId: string; from: number; to: number };
      admissions++;
      for (let i = from; i < to; i++) seen.set(`${batchId}:${i}`, (seen.get(`${batchId}:${i}`) ?? 0) + 1);
    }
  }
  return { admissions, twice: [...seen.values()].filter((n) => n > 1).length };
}

export const schedulerLeader: ChaosRow = {
  id: 'scheduler-leader',
  fault: 'scheduler leader SIGKILL',
  mustHold: 'a standby leads within the lease; no chunk admitted twice',
  async run(env) {
    const fleet = await startChaosFleet(env, { workers: 2, schedulers: 2, leaseTtlMs: LEASE_MS });
    try {
      const load = await SteadyLoad.start(fleet, env, { batches: 3 });
      const [leader, standby] = fleet.schedulers as [(typeof fleet.schedulers)[0], (typeof fleet.schedulers)[0]];
      // Kill it once it has admitted some chunks (mid admission of the batches).
      const admitting = await waitFor(async () => admittedTwice([leader.output()]).admissions >= 2, 60_000);
      if (!admitting) throw new Error('the leader admitted no chunks within 60 s');
      const killAt = Date.now();
      await leader.kill();
      env.log(`SIGKILL scheduler leader ${leader.pid}`);
      const led = await waitFor(async () => standby.output().includes('became scheduler leader'), 30_000);
      const recoveryMs = led ? Date.now() - killAt : null;
      const tally = await load.settle(env.mode === 'short' ? 120_000 : 180_000);
      const { admissions, twice } = admittedTwice([leader.output(), standby.output()]);
      const holds =
        tally.lost === 0 &&
        tally.duplicated === 0 &&
        twice === 0 &&
        recoveryMs !== null &&
        recoveryMs <= LEASE_MS + SLACK_MS;
      return {
        load: load.describe(),
        lost: tally.lost,
        duplicated: tally.duplicated + twice,
        recoveryMs,
        holds,
        detail: `lease ${LEASE_MS} ms (bound +${SLACK_MS} ms renewal and polling); standby led after ${recoveryMs === null ? 'never' : `${(recoveryMs / 1000).toFixed(1)} s`}; ${admissions} admissions logged by both replicas, ${twice} chunks admitted twice; ${tally.summary}`,
      };
    } finally {
      await fleet.stop();
    }
  },
};
