/**
 * file:// against a real temp folder: the shared conformance suite, through
 * the registry, with `roots` set so that a path outside them is refused, and
 * the adapter's own confinement: links out of a root, swapped in late, `..`.
 */
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStorage, storageConfigSchema, type Storage } from '../../../common/storage/index.ts';
import { describeStorageConformance } from '../../helpers/storage/conformance.ts';
import { collect, expectCode, patternStream, readText } from '../../helpers/storage/fixtures.ts';

async function tempStorage() {
  const dir = await mkdtemp(join(tmpdir(), 'interfleet-storage-'));
  const storage = createStorage(storageConfigSchema.parse({ file: { roots: [join(dir, 'data')] } }));
  return { dir, storage, root: `${pathToFileURL(join(dir, 'data')).href}/` };
}

describeStorageConformance('file:// (temp folder)', async () => {
  const { dir, storage, root } = await tempStorage();
  return {
    storage,
    root,
    deniedUri: `${pathToFileURL(join(dir, 'elsewhere', 'x.jsonl')).href}`,
    close: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('file:// specifics', () => {
  let dir: string;
  let storage: Storage;
  let root: string;
  beforeAll(async () => {
    ({ dir, storage, root } = await tempStorage());
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('round-trips names that need escaping in a URL', async () => {
    const uri = `${root}escape/a%20b%23c.txt`;
    await storage.writeIfAbsent(uri, Buffer.from('ok'));
    expect(await readdir(join(dir, 'data', 'escape'))).toEqual(['a b#c.txt']);
    expect((await collect(storage, `${root}escape/`)).map((i) => i.uri)).toEqual([uri]);
    expect(await readText(storage, uri)).toBe('ok');
  });

  it('keeps in-flight temp files out of listings and leaves none behind', async () => {
    const uri = `${root}temps/part-1`;
    let listedDuring: string[] = [];
    const body = patternStream(4 * 256 * 1024, (i) => {
      if (i === 2) void collect(storage, `${root}temps/`).then((items) => (listedDuring = items.map((x) => x.uri)));
    });
    await storage.writeIfAbsent(uri, body);
    await storage.writeIfAbsent(uri, Buffer.from('again'));
    expect(listedDuring).toEqual([]);
    expect(await readdir(join(dir, 'data', 'temps'))).toEqual(['part-1']);
  });
});

describe('file:// confinement at the moment of each call', () => {
  let dir: string;
  let storage: Storage;
  let root: string;
  const outside = () => join(dir, 'elsewhere');
  beforeAll(async () => {
    ({ dir, storage, root } = await tempStorage());
    await mkdir(join(dir, 'data'), { recursive: true });
    await mkdir(outside(), { recursive: true });
    await writeFile(join(outside(), 'secret.txt'), 'secret\n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('refuses a link out of the root for reads, stats and listings, reading nothing', async () => {
    await symlink(join(outside(), 'secret.txt'), join(dir, 'data', 'to-secret.txt'));
    await symlink(outside(), join(dir, 'data', 'to-elsewhere'));
    // One call at a time: a rejection made before its await would be reported as unhandled.
    for (const call of [
      () => storage.read(`${root}to-secret.txt`),
      () => storage.stat(`${root}to-secret.txt`),
      () => storage.read(`${root}to-elsewhere/secret.txt`),
      () => storage.list(`${root}to-elsewhere/`),
    ]) {
      await expectCode(call(), 'permission_denied');
    }
    await expect(storage.stat(`${root}to-secret.txt`)).rejects.toThrow(/symbolic link out of the allowed roots/);
  });

  it('refuses a write through a link out of the root, a dangling one included, writing nothing', async () => {
    await symlink(outside(), join(dir, 'data', 'out-dir'));
    await symlink(join(outside(), 'planted.jsonl'), join(dir, 'data', 'dangling.jsonl'));
    await expectCode(storage.writeIfAbsent(`${root}out-dir/new.jsonl`, Buffer.from('x')), 'permission_denied');
    await expectCode(storage.writeIfAbsent(`${root}dangling.jsonl`, Buffer.from('x')), 'permission_denied');
    await expectCode(storage.concat(`${root}out-dir/merged.jsonl`, []), 'permission_denied');
    expect((await readdir(outside())).sort()).toEqual(['secret.txt']);
  });

  it('follows links that stay inside the root, and answers listings in the caller spelling', async () => {
    await storage.writeIfAbsent(`${root}real/a.txt`, Buffer.from('a'));
    await symlink(join(dir, 'data', 'real'), join(dir, 'data', 'alias'));
    expect(await readText(storage, `${root}alias/a.txt`)).toBe('a');
    expect((await collect(storage, `${root}alias/`)).map((i) => i.uri)).toEqual([`${root}alias/a.txt`]);
  });

  it('refuses a link swapped in after an earlier call was allowed (checked again at every open)', async () => {
    await storage.writeIfAbsent(`${root}swap/in.jsonl`, Buffer.from('ok\n'));
    expect(await readText(storage, `${root}swap/in.jsonl`)).toBe('ok\n');
    await rm(join(dir, 'data', 'swap'), { recursive: true });
    await symlink(outside(), join(dir, 'data', 'swap'));
    await writeFile(join(outside(), 'in.jsonl'), 'outside\n');
    await expectCode(storage.read(`${root}swap/in.jsonl`), 'permission_denied');
  });

  it('refuses ".." in any spelling, and serves a root that is itself a link', async () => {
    await expectCode(storage.stat(`${root}a/../../elsewhere/secret.txt`), 'invalid_uri');
    await expectCode(storage.stat(`${root}a/%2e%2e/%2E%2E/elsewhere/secret.txt`), 'invalid_uri');
    await symlink(join(dir, 'data'), join(dir, 'root-link'));
    const linked = createStorage(storageConfigSchema.parse({ file: { roots: [join(dir, 'root-link')] } }));
    const uri = `${pathToFileURL(join(dir, 'root-link')).href}/via-link.txt`;
    expect(await linked.writeIfAbsent(uri, Buffer.from('v'))).toEqual({ created: true });
    expect(await readText(linked, uri)).toBe('v');
  });
});
