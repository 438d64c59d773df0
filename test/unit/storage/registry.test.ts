import { realpathSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createStorage, isStorageError, storageConfigSchema } from '../../../common/storage/index.ts';
import { abortable, codeForHttpStatus, StorageError } from '../../../common/storage/errors.ts';

describe('createStorage', () => {
  it('routes by scheme, building each adapter once', async () => {
    const storage = createStorage(storageConfigSchema.parse({ file: { roots: [realpathSync(tmpdir())] } }));
    expect(await storage.storageFor('file:///a')).toBe(await storage.storageFor('file:///b'));
    expect(await storage.storageFor('gs://bucket/a')).toBe(await storage.storageFor('gs://other/b'));
    expect(await storage.storageFor('oci://b@ns/a')).not.toBe(await storage.storageFor('gs://bucket/a'));
    await expect(storage.storageFor('s3://b/k')).rejects.toThrow(StorageError);
    const dir = await mkdtemp(join(tmpdir(), 'interfleet-registry-'));
    try {
      const uri = pathToFileURL(join(dir, 'x.txt')).href;
      expect(await storage.writeIfAbsent(uri, Buffer.from('x'))).toEqual({ created: true });
      expect((await storage.stat(uri)).size).toBe(1);
      // No roots: file:// is off.
      await expect(createStorage().stat(uri)).rejects.toMatchObject({
        code: 'permission_denied',
        message: expect.stringContaining('storage.file.roots is empty'),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects (never throws synchronously) bad URIs and mixed-scheme concat', async () => {
    const storage = createStorage();
    await expect(storage.stat('s3://b/k')).rejects.toMatchObject({ code: 'invalid_uri' });
    await expect(storage.concat('gs://bucket/out', ['gs://bucket/a', 'oci://b@ns/a'])).rejects.toMatchObject({
      code: 'invalid_uri',
      message: expect.stringContaining('one scheme only'),
    });
  });
});

describe('storageConfigSchema', () => {
  it('defaults to ADC for GCS, a config file for OCI, no local path', () => {
    expect(storageConfigSchema.parse({})).toEqual({
      file: { roots: [] },
      gcs: { auth: 'adc' },
      oci: { auth: 'config-file', partSizeBytes: 16 * 1024 * 1024 },
    });
  });

  it.each([
    [{ gcs: { auth: 'none' } }, 'gcs.auth', 'needs apiEndpoint'],
    [{ oci: { partSizeBytes: 1024 } }, 'oci.partSizeBytes', ''],
    [{ oci: { auth: 'password' } }, 'oci.auth', ''],
    [{ file: { roots: ['data'] } }, 'file.roots.0', 'absolute'],
    [{ oci: { endpoint: 'not a url' } }, 'oci.endpoint', ''],
  ])('rejects %j at %s', (input, path, message) => {
    const result = storageConfigSchema.safeParse(input);
    expect(result.success).toBe(false);
    const issue = result.error!.issues[0]!;
    expect(issue.path.join('.')).toBe(path);
    expect(issue.message).toContain(message);
  });
});

describe('storage errors', () => {
  it.each([
    [404, 'not_found', false],
    [401, 'permission_denied', false],
    [403, 'permission_denied', false],
    [412, 'precondition_failed', false],
    [429, 'unavailable', true],
    [503, 'unavailable', true],
    [400, 'internal', false],
  ] as const)('maps HTTP %i to %s', (status, code, retryable) => {
    expect(codeForHttpStatus(status)).toBe(code);
    expect(new StorageError(code, 'x').retryable).toBe(retryable);
  });

  it('stops waiting on an aborted call with code cancelled', async () => {
    const controller = new AbortController();
    const never = new Promise<never>(() => undefined);
    const waiting = abortable('gs://bucket/k', controller.signal, () => never);
    controller.abort(new Error('draining'));
    const err: unknown = await waiting.catch((e: unknown) => e);
    expect(isStorageError(err, 'cancelled')).toBe(true);
    expect((err as StorageError).cause).toEqual(new Error('draining'));
  });
});
