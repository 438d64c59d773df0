/**
 * The sweep of what a worker killed on its host left: real processes and
 * directories (Linux /proc tells which directory a command runs in).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { processAlive } from '../../../common/process.ts';
import { sweepOrphans, writeOwner } from '../../../gpu-worker/training/orphans.ts';

const root = await mkdtemp(join(tmpdir(), 'orphans-'));
afterAll(() => rm(root, { recursive: true, force: true }));

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => p.once('exit', r));
  return p.pid!;
}

describe('sweepOrphans', () => {
  it("kills a dead worker's command group and removes its directory; leaves a live worker's and anything else", async () => {
    const dead = await deadPid();
    const orphan = join(root, 'interfleet-train_x-r1-k0-aaaa');
    const mine = join(root, 'interfleet-train_x-r1-k1-bbbb');
    const stranger = join(root, 'interfleet-something-else');
    for (const d of [orphan, mine, stranger]) await mkdir(d);
    // The orphan's command: a process group of its own, working in its directory.
    const command = spawn('sleep', ['30'], { cwd: orphan, detached: true, stdio: 'ignore' });
    const gone = new Promise((r) => command.once('exit', (_code, signal) => r(signal)));
    await writeOwner(orphan, { worker: dead, group: command.pid! });
    await writeOwner(mine, { worker: process.pid });
    // A group whose leader works elsewhere (a reused pid) is not killed.
    const elsewhere = spawn('sleep', ['30'], { cwd: root, detached: true, stdio: 'ignore' });
    const reused = join(root, 'interfleet-train_y-r1-k0-cccc');
    await mkdir(reused);
    await writeOwner(reused, { worker: dead, group: elsewhere.pid! });

    expect(await sweepOrphans(root)).toEqual({ dirs: 2, groups: 1 });
    expect(await gone).toBe('SIGKILL');
    expect(processAlive(elsewhere.pid!)).toBe(true);
    elsewhere.kill('SIGKILL');
    expect((await readdir(root)).sort()).toEqual(['interfleet-something-else', 'interfleet-train_x-r1-k1-bbbb']);
  });
});
