/**
 * The bundles production runs (bin/build) and the way it starts them
 * (bin/start, the image's entry point): the producer starts from its bundle
 * as plain node with its V8 flags, answers, and drains on SIGTERM; the cloud
 * SDKs stay out of its static imports (loaded on first use, as from source).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../launcher/local-redis.ts';
import { until } from '../helpers/until.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
let base: string;
let out: string;

beforeAll(async () => {
  // Two levels below the root, as dist/<role>/ is (see bin/build).
  await mkdir(join(root, '.tmp'), { recursive: true });
  base = await mkdtemp(join(root, '.tmp', 'bundle-test-'));
  out = join(base, 'dist');
  await promisify(execFile)(join(root, 'bin/build'), [out], { cwd: root });
}, 60_000);

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('bin/build and bin/start', () => {
  it('bundles every role, with the cloud SDKs only in lazily imported chunks', async () => {
    for (const role of ['producer', 'scheduler', 'gpu-worker', 'launcher']) {
      expect(await readdir(join(out, role))).toContain('main.js');
    }
    const files = (await readdir(join(out, 'producer'))).filter((f) => !/^(gcs|oci)-storage-/.test(f));
    for (const f of files) {
      const text = await readFile(join(out, 'producer', f), 'utf8');
      expect(text, f).not.toMatch(/from\s+["'](@google-cloud\/storage|oci-objectstorage|oci-common)["']/);
    }
  });

  it('starts the producer from its bundle as plain node with its V8 flags, and drains on SIGTERM', async () => {
    const port = await freePort();
    const child = spawn(join(root, 'bin/start'), [join(out, 'producer/main.js')], {
      cwd: root,
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        INTERFLEET_PREFIX: `bundle-test-${process.pid}`,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const healthy = await until(
        () =>
          fetch(`http://127.0.0.1:${port}/healthz`).then(
            (r) => r.ok || undefined,
            () => undefined,
          ),
        15_000,
      ).catch(() => false);
      expect(healthy).toBe(true);
      // bin/start execs node: the child's pid is the producer itself.
      const argv = (await readFile(`/proc/${child.pid}/cmdline`, 'utf8')).split('\0');
      expect(argv).toContain('--max-semi-space-size=4');
      expect(argv).toContain('--max-old-space-size=768');
      expect(argv.join(' ')).not.toMatch(/tsx/);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);

  it('refuses an entry that was not built', async () => {
    const run = promisify(execFile)(join(root, 'bin/start'), [join(base, 'nowhere/main.js')], { cwd: root });
    await expect(run).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/npm run build/) });
  });
});
