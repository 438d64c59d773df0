/**
 * gs:// with the real @google-cloud/storage client against the local JSON
 * API stand-in (test/helpers/storage/gcs-server.ts, in a child process): the
 * shared conformance suite, then what is particular to GCS (compose rounds,
 * the stand-in's own preconditions).
 */
import { randomUUID } from 'node:crypto';
import { Storage as GcsClient } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStorage, storageConfigSchema, type Storage } from '../../../common/storage/index.ts';
import { describeStorageConformance } from '../../helpers/storage/conformance.ts';
import { collect, readText } from '../../helpers/storage/fixtures.ts';
import { startStandIn, type StandIn } from '../../helpers/storage/stand-in.ts';

// No credentials are used (auth: none), and nothing may probe for a metadata server.
process.env.METADATA_SERVER_DETECTION = 'none';

const bucket = 'interfleet-test';
const deniedBucket = 'interfleet-denied';

async function setup() {
  const standIn = await startStandIn('gcs', { buckets: [bucket, deniedBucket] });
  await standIn.deny(deniedBucket);
  const config = storageConfigSchema.parse({ gcs: { apiEndpoint: standIn.url, auth: 'none' } });
  return { standIn, storage: createStorage(config), root: `gs://${bucket}/run-${randomUUID()}/` };
}

describeStorageConformance('gs:// (real client, local stand-in)', async () => {
  const { standIn, storage, root } = await setup();
  return {
    storage,
    root,
    deniedUri: `gs://${deniedBucket}/batch/input.jsonl`,
    concatSources: 70, // three compose calls into temporaries, then one into the target
    close: () => standIn.close(),
  };
});

describe('gs:// specifics', () => {
  let standIn: StandIn;
  let storage: Storage;
  let root: string;
  beforeAll(async () => {
    ({ standIn, storage, root } = await setup());
  }, 60_000);
  afterAll(() => standIn?.close());

  it('composes more than 32 × 32 sources in rounds and deletes the temporaries', async () => {
    const sources = Array.from({ length: 1030 }, (_, i) => `${root}rounds/p-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < sources.length; i += 100) {
      await Promise.all(
        sources.slice(i, i + 100).map((uri, j) => storage.writeIfAbsent(uri, Buffer.from(`${i + j},`))),
      );
    }
    const before = (await standIn.counts()).compose ?? 0;
    const target = `${root}rounds-out.txt`;
    await storage.concat(target, sources);
    // 33 groups of ≤ 32, then 2, then the target.
    expect((await standIn.counts()).compose! - before).toBe(36);
    expect(await readText(storage, target)).toBe(sources.map((_, i) => `${i},`).join(''));
    expect(await collect(storage, `${root}rounds-out.txt.`)).toEqual([]);
  }, 60_000);

  it('reads ranges with a Range header, not by downloading the object', async () => {
    const uri = `${root}range.txt`;
    await storage.writeIfAbsent(uri, Buffer.from('abcdefgh'));
    const before = await standIn.counts();
    expect(await readText(storage, uri, { start: 2, end: 4 })).toBe('cd');
    const after = await standIn.counts();
    expect(after['media-range']).toBe((before['media-range'] ?? 0) + 1);
    expect(after.media ?? 0).toBe(before.media ?? 0);
  });

  it('stand-in: enforces ifGenerationMatch like GCS (the Firebase emulator does not)', async () => {
    const client = new GcsClient({ apiEndpoint: standIn.url, projectId: 'test' });
    const file = client.bucket(bucket).file(`${root.slice(`gs://${bucket}/`.length)}precondition.txt`);
    const opts = { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } };
    await file.save('one', opts);
    await expect(file.save('two', opts)).rejects.toMatchObject({ code: 412 });
    const [generation] = [(await file.getMetadata())[0].generation];
    await expect(file.delete({ ifGenerationMatch: Number(generation) + 1 })).rejects.toMatchObject({ code: 412 });
    expect((await file.download())[0].toString()).toBe('one');
  });
});
