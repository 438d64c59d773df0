/**
 * npm start's file roots (launcher/file-roots.ts): the configured roots as
 * they are, or else one data directory it creates (INTERFLEET_DATA_DIR, else
 * under XDG_DATA_HOME / ~/.local/share), by its real path.
 */
import { mkdtemp, realpath, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../common/config.ts';
import { defaultFileDataDir, withFileRoots } from '../../../launcher/file-roots.ts';

let dir: string;
beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'interfleet-file-roots-')));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('withFileRoots', () => {
  it('keeps roots the config names', () => {
    const config = parseConfig({ INTERFLEET_FILE_ROOTS: `${dir}/a:${dir}/b` });
    expect(config.storage.file.roots).toEqual([`${dir}/a`, `${dir}/b`]);
    const out = withFileRoots(config, {});
    expect(out).toEqual({ config });
  });

  it('otherwise creates INTERFLEET_DATA_DIR and gives file:// its real path', async () => {
    await symlink(dir, join(dir, 'link'));
    const wanted = join(dir, 'link', 'data', 'nested');
    const { config, dataDir } = withFileRoots(parseConfig({ INTERFLEET_DATA_DIR: wanted }), {});
    expect(dataDir).toBe(join(dir, 'data', 'nested'));
    expect(config.storage.file.roots).toEqual([dataDir]);
    expect((await stat(dataDir!)).isDirectory()).toBe(true);
  });

  it('defaults under XDG_DATA_HOME, else ~/.local/share', () => {
    expect(defaultFileDataDir({ XDG_DATA_HOME: '/x/data', HOME: '/home/u' })).toBe('/x/data/interfleet/data');
    expect(defaultFileDataDir({ HOME: '/home/u' })).toBe('/home/u/.local/share/interfleet/data');
    const { dataDir } = withFileRoots(parseConfig({}), { XDG_DATA_HOME: join(dir, 'xdg') });
    expect(dataDir).toBe(join(dir, 'xdg', 'interfleet', 'data'));
  });
});
