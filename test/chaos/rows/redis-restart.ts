/**
 * Row: the fleet's redis-server killed with SIGKILL (no shutdown fsync) and started again on
 * the same port and append-only file, under load and a trickle of batch submissions (one every
 * 300 ms). Run twice: `appendfsync always` (must lose no acknowledged submission) and
 * `everysec` (what it loses is measured and said). Every role must work again within 20 s of
 * the restart without being restarted itself.
 */
import { startChaosFleet } from '../fleet.ts';
import { SteadyLoad } from '../load.ts';
import { seconds, waitResumed } from '../resume.ts';
import type { ChaosEnv, ChaosRow } from '../types.ts';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';

const RESUME_LIMIT_MS = 20_000;
const LEASE_TTL_MS = 2000;

interface Run {
  fsync: 'always' | 'everysec';
  load: string;
  acknowledged: number;
  missing: number;
  lost: number;
  duplicated: number;
  recoveryMs: number | null;
  exited: string[];
  words: string;
}

async function once(base: ChaosEnv, fsync: 'always' | 'everysec'): Promise<Run> {
  const workDir = join(base.workDir, fsync);
  mkdirSync(workDir);
  const env: ChaosEnv = { ...base, workDir };
  const fleet = await startChaosFleet(env, { workers: 2, privateRedis: fsync });
  try {
    const load = await SteadyLoad.start(fleet, env, { trickle: { everyMs: 300, lines: 4 } });
    await new Promise((r) => setTimeout(r, env.mode === 'short' ? 5000 : 8000));
    const before = load.batches.length;
    await fleet.killRedis();
    env.log(`SIGKILL redis-server (appendfsync ${fsync}) after ${before} acknowledged batches`);
    await new Promise((r) => setTimeout(r, 2000));
    await fleet.restartRedis();
    const restartedAt = Date.now();
    const resumed = await waitResumed(fleet, load, restartedAt, LEASE_TTL_MS, RESUME_LIMIT_MS + 5000);
    env.log(
      `resumed: producer ${seconds(resumed.producerMs)}, workers ${seconds(resumed.workersMs)}, scheduler ${seconds(resumed.schedulerMs)}`,
    );
    await new Promise((r) => setTimeout(r, 3000));
    const tally = await load.settle(env.mode === 'short' ? 120_000 : 180_000);
    const missing = tally.batches.filter((b) => !b.status).length;
    const times = [resumed.producerMs, resumed.workersMs, resumed.schedulerMs];
    return {
      fsync,
      load: load.describe(),
      acknowledged: tally.batches.length,
      missing,
      lost: tally.lost,
      duplicated: tally.duplicated,
      recoveryMs: times.some((t) => t === undefined) ? null : Math.max(...(times as number[])),
      exited: resumed.exited,
      words:
        `${fsync}: ${tally.batches.length} batches acknowledged, ${missing} missing after restart; ` +
        `producer ${seconds(resumed.producerMs)}, workers ${seconds(resumed.workersMs)}, scheduler ${seconds(resumed.schedulerMs)}` +
        `${resumed.exited.length ? `; exited: ${resumed.exited.join(', ')}` : ''}; ${load.refusedSubmits.length} submissions refused while down; ${tally.summary}`,
    };
  } finally {
    await fleet.stop();
  }
}

export const redisRestart: ChaosRow = {
  id: 'redis-restart',
  fault: 'Redis SIGKILL + restart with AOF (appendfsync always, then everysec)',
  mustHold:
    '0 acknowledged submissions lost (with `always`; say what `everysec` loses); every role resumes ≤ 20 s with no restart',
  short: true,
  async run(env) {
    const always = await once(env, 'always');
    const everysec = await once(env, 'everysec');
    const resumedInTime = (r: Run): boolean =>
      r.recoveryMs !== null && r.recoveryMs <= RESUME_LIMIT_MS && r.exited.length === 0;
    const holds =
      always.lost === 0 &&
      always.duplicated === 0 &&
      always.missing === 0 &&
      resumedInTime(always) &&
      resumedInTime(everysec);
    return {
      load: always.load,
      lost: always.lost,
      duplicated: always.duplicated + everysec.duplicated,
      recoveryMs: Math.max(always.recoveryMs ?? Infinity, everysec.recoveryMs ?? Infinity),
      holds,
      detail: `${always.words} | ${everysec.words} (everysec lost ${everysec.lost} lines; a process kill leaves the written AOF in the page cache: only a machine crash loses everysec's last second, not caused here)`,
    };
  },
};
