/**
 * file:// against a real temp folder: the shared conformance suite, through
 * the registry, with `roots` set so that a path outside them is refused.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStorage, storageConfigSchema, type Storage } from '../../../common/storage/index.ts';
import { describeStorageConformance } from '../../helpers/storage/conformance.ts';
import { collect, patternStream, readText } from '../../helpers/storage/fixtures.ts';

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
