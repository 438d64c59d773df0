/**
 * oci:// with the real oci-objectstorage client, signing with a key made
 * here, against the local REST stand-in (test/helpers/storage/oci-server.ts,
 * in a child process, verifying every signature): the shared conformance
 * suite, then what is particular to OCI (signatures, multipart uploads).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStorage, storageConfigSchema, type Storage } from '../../../common/storage/index.ts';
import { describeStorageConformance } from '../../helpers/storage/conformance.ts';
import { expectCode, MiB, patternStream, readText } from '../../helpers/storage/fixtures.ts';
import { ociKeyPair, ociSigner, quietOciSdkWarnings } from '../../helpers/storage/oci-credentials.ts';
import { startStandIn, type StandIn } from '../../helpers/storage/stand-in.ts';

const namespace = 'interfleetns';
const bucket = 'interfleet-test';
const deniedBucket = 'interfleet-denied';
const partSizeBytes = 10 * MiB; // OCI's minimum part size, so the 96 MiB object takes ten parts

async function setup() {
  const keys = ociKeyPair();
  const standIn = await startStandIn('oci', {
    buckets: [bucket, deniedBucket],
    namespace,
    publicKeyPem: keys.publicKey,
  });
  await standIn.deny(deniedBucket);
  const config = storageConfigSchema.parse({ oci: { endpoint: standIn.url, partSizeBytes } });
  const storage = createStorage(config, { oci: { authProvider: ociSigner(keys.privateKey) } });
  return { standIn, storage, config, root: `oci://${bucket}@${namespace}/run-${randomUUID()}/` };
}

quietOciSdkWarnings();

describeStorageConformance('oci:// (real client, local stand-in)', async () => {
  const { standIn, storage, root } = await setup();
  return {
    storage,
    root,
    deniedUri: `oci://${deniedBucket}@${namespace}/batch/input.jsonl`,
    // Node's fetch holds a sent body until its connection is reused; on a loaded machine up to four
    // sent parts were live (43.6 MB; three failed tries in a row under the full suite on CI, none
    // alone), probably one per connection the SDK opened while others were busy (not verified).
    // The budget allows four parts; the object is ten, so an adapter holding the whole body fails.
    largeObjectBytes: 96 * MiB,
    memoryBudgetBytes: 4 * partSizeBytes + 6 * MiB,
    close: () => standIn.close(),
  };
});

describe('oci:// specifics', () => {
  let standIn: StandIn;
  let storage: Storage;
  let root: string;
  let config: ReturnType<typeof storageConfigSchema.parse>;
  beforeAll(async () => {
    ({ standIn, storage, root, config } = await setup());
  }, 60_000);
  afterAll(() => standIn?.close());

  it('stand-in: refuses unsigned requests and signatures by another key', async () => {
    const response = await fetch(`${standIn.url}/n/${namespace}/b/${bucket}/o/x`);
    expect(response.status).toBe(401);
    const stranger = createStorage(config, { oci: { authProvider: ociSigner(ociKeyPair().privateKey) } });
    await expectCode(stranger.stat(`${root}x`), 'permission_denied');
  });

  it('maps a missing bucket (OCI: "missing or not authorized") to permission_denied', async () => {
    await expectCode(storage.read(`oci://no-such-bucket@${namespace}/x`), 'permission_denied');
  });

  it('uploads a long stream in parts, and only one of two racing multipart uploads commits', async () => {
    const uri = `${root}multipart/part.bin`;
    const before = await standIn.counts();
    const results = await Promise.all([
      storage.writeIfAbsent(uri, patternStream(21 * MiB)),
      storage.writeIfAbsent(uri, patternStream(23 * MiB)),
    ]);
    expect(results.map((r) => r.created).sort()).toEqual([false, true]);
    const after = await standIn.counts();
    expect(after['mpu-part']! - (before['mpu-part'] ?? 0)).toBeGreaterThanOrEqual(3);
    expect(after['mpu-commit']! - (before['mpu-commit'] ?? 0)).toBeGreaterThanOrEqual(1);
    const size = (await storage.stat(uri)).size;
    expect([21 * MiB, 23 * MiB]).toContain(size);
    expect(await readText(storage, `${root}multipart/part.bin`, { start: size - 1 })).toHaveLength(1);
  }, 60_000);

  it('reads ranges with a Range header', async () => {
    const uri = `${root}range.txt`;
    await storage.writeIfAbsent(uri, Buffer.from('abcdefgh'));
    const before = (await standIn.counts())['get-range'] ?? 0;
    expect(await readText(storage, uri, { start: 2, end: 4 })).toBe('cd');
    expect((await standIn.counts())['get-range']).toBe(before + 1);
  });
});
