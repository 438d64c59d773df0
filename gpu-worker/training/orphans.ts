/**
 * What a worker killed with SIGKILL leaves on its host: its ranks' working
 * directories and, since a rank's command runs in its own process group, the
 * commands themselves, still running (holding a GPU's memory) though nobody
 * will upload their output or settle their rank. On OKE the pod's end takes
 * both; on one machine (npm start's local workers) a training lane sweeps them
 * when it starts.
 *
 * Each rank directory holds `owner.json`: the worker's pid and, once started,
 * the command's process group. A directory whose worker is gone is an orphan:
 * its process group is killed, but only when the group's leader still has
 * that directory as its working directory (Linux /proc; a reused pid is left
 * alone), and the directory is removed.
 */
import { readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { processAlive } from '../../common/process.ts';

const OWNER_FILE = 'owner.json';
/** makeRankDirs names every rank directory so. */
const RANK_DIR_PREFIX = 'interfleet-';

const ownerSchema = z.object({ worker: z.number().int().positive(), group: z.number().int().positive().optional() });
export type RankOwner = z.infer<typeof ownerSchema>;

/** Records who owns a rank directory (and, once started, its command's process group). */
export const writeOwner = (work: string, owner: RankOwner): Promise<void> =>
  writeFile(join(work, OWNER_FILE), JSON.stringify(owner));

/** Whether process `pid` runs in `dir` (false when it cannot be told: not Linux, gone, not ours). */
async function runsIn(pid: number, dir: string): Promise<boolean> {
  try {
    return (await realpath(`/proc/${pid}/cwd`)) === (await realpath(dir));
  } catch {
    return false;
  }
}

/** Kills the commands and removes the directories that dead workers left under `root`; how many directories. */
export async function sweepOrphans(root: string): Promise<{ dirs: number; groups: number }> {
  let dirs = 0;
  let groups = 0;
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isDirectory() || !entry.name.startsWith(RANK_DIR_PREFIX)) continue;
    const work = join(root, entry.name);
    const owner = await readFile(join(work, OWNER_FILE), 'utf8')
      .then((raw) => ownerSchema.safeParse(JSON.parse(raw)).data)
      .catch(() => undefined);
    if (!owner || processAlive(owner.worker)) continue;
    if (owner.group !== undefined && (await runsIn(owner.group, work))) {
      try {
        process.kill(-owner.group, 'SIGKILL');
        groups++;
      } catch {
        // gone meanwhile
      }
    }
    await rm(work, { recursive: true, force: true });
    dirs++;
  }
  return { dirs, groups };
}
