/**
 * Which storage a caller may name (common/storage/confinement.ts), as a
 * table: the pure decision on lexical and real paths and grants, then the
 * same through the producer's check (producer/auth/storage-grants.ts) on a
 * real folder with real symbolic links.
 */
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StorageGrant } from '../../../common/auth/principal.ts';
import { FleetError } from '../../../common/errors.ts';
import {
  decideStorageAccess,
  hasDotDot,
  type StorageAccessKind,
  type StoragePolicy,
} from '../../../common/storage/confinement.ts';
import { realPathOf } from '../../../common/storage/real-path.ts';
import { confineStorage } from '../../../producer/auth/storage-grants.ts';

const tenantGrant: StorageGrant = { prefixes: ['gs://shared-bucket/{tenant}/', 'oci://b@ns/{tenant}', 'gs://bkt/a'] };
const policy = (storage: StorageGrant, fileRoots: string[] = ['/data'], tenant = 'acme'): StoragePolicy => ({
  fileRoots,
  principal: { tenant, storage },
});
const decide = (uri: string, p: StoragePolicy, access: StorageAccessKind = 'read', real = new Map<string, string>()) =>
  decideStorageAccess({ field: 'input_file', uri, access }, p, real);

describe('decideStorageAccess', () => {
  it.each([
    // [uri, policy, expected code or 'allowed']
    ['file:///etc/passwd', policy('any'), 'forbidden'],
    ['file:///data/in.jsonl', policy('any'), 'allowed'],
    ['file:///data', policy('any'), 'allowed'],
    ['file:///database/in.jsonl', policy('any'), 'forbidden'],
    ['file:///data/in.jsonl', policy('any', []), 'forbidden'],
    ['file:///data/../etc/passwd', policy('any'), 'bad_request'],
    ['file:///data/%2e%2e/etc/passwd', policy('any'), 'bad_request'],
    ['file:///data/.%2E/etc/passwd', policy('any'), 'bad_request'],
    ['file:///data/%252e%252e/etc/passwd', policy('any'), 'bad_request'],
    ['gs://bkt/x/../y', policy('any'), 'bad_request'],
    ['s3://bucket/key', policy('any'), 'bad_request'],
    ['http://example.com/x', policy('any'), 'bad_request'],
    ['gs://any-bucket/anything', policy('any'), 'allowed'],
    ['gs://shared-bucket/acme/in.jsonl', policy(tenantGrant), 'allowed'],
    ['gs://shared-bucket/acme', policy(tenantGrant), 'allowed'],
    ['gs://shared-bucket/globex/in.jsonl', policy(tenantGrant), 'forbidden'],
    ['gs://shared-bucket/acme-evil/in.jsonl', policy(tenantGrant), 'forbidden'],
    ['gs://other-bucket/acme/in.jsonl', policy(tenantGrant), 'forbidden'],
    ['gs://bkt/a/x.jsonl', policy(tenantGrant), 'allowed'],
    ['gs://bkt/ab', policy(tenantGrant), 'forbidden'],
    ['gs://bkt/ab/x.jsonl', policy(tenantGrant), 'forbidden'],
    ['oci://b@ns/acme/in.jsonl', policy(tenantGrant), 'allowed'],
    ['oci://b@other/acme/in.jsonl', policy(tenantGrant), 'forbidden'],
    ['oci://b@ns/globex/in.jsonl', policy(tenantGrant), 'forbidden'],
    // file:// is the roots' unless a key names file:// prefixes: then only there, and still under the roots.
    ['file:///data/in.jsonl', policy(tenantGrant), 'allowed'],
    ['file:///data/in.jsonl', policy({ prefixes: [] }), 'allowed'],
    ['file:///etc/passwd', policy({ prefixes: [] }), 'forbidden'],
    ['file:///data/in.jsonl', policy({ prefixes: ['file:///data/{tenant}/', 'gs://bkt/'] }), 'forbidden'],
    ['file:///data/acme/in.jsonl', policy({ prefixes: ['file:///data/{tenant}/'] }), 'allowed'],
    ['file:///data/globex/in.jsonl', policy({ prefixes: ['file:///data/{tenant}/'] }), 'forbidden'],
    ['file:///etc/passwd', policy({ prefixes: ['file:///etc/'] }), 'forbidden'],
    ['gs://shared-bucket/acme/x', policy({ prefixes: [] }), 'forbidden'],
  ] as const)('%s under %j: %s', (uri, p, expected) => {
    const d = decide(uri, p);
    expect(d.allowed ? 'allowed' : d.code).toBe(expected);
    if (!d.allowed) expect(d.message).toMatch(/^input_file: /);
  });

  it('refuses a path whose real path leaves its root, and allows one that stays', () => {
    const real = new Map([
      ['/data/link', '/etc/passwd'],
      ['/data/alias/x', '/data/real/x'],
      ['/data', '/data'],
    ]);
    const out = decide('file:///data/link', policy('any'), 'read', real);
    expect(out).toMatchObject({ allowed: false, code: 'forbidden', message: expect.stringContaining('symbolic link') });
    expect(decide('file:///data/alias/x', policy('any'), 'write', real)).toEqual({ allowed: true });
  });

  it('says which kind of access and which prefixes the key has', () => {
    const d = decideStorageAccess(
      { field: 'output_location', uri: 'gs://shared-bucket/globex/', access: 'write' },
      policy(tenantGrant),
      new Map(),
    );
    expect(d).toMatchObject({
      allowed: false,
      message: expect.stringMatching(/^output_location: .* may write \(gs:\/\/shared-bucket\/acme\//),
    });
  });

  it('sees ".." however it is spelled', () => {
    expect(hasDotDot('file:///a/b/c')).toBe(false);
    expect(hasDotDot('file:///a/..b/c')).toBe(false);
    expect(hasDotDot('gs://bkt/x%2F..%2Fy')).toBe(true);
    expect(hasDotDot('file:///a\\..\\b')).toBe(true);
  });
});

describe('confineStorage on a real folder', () => {
  let dir: string;
  let root: string;
  const uri = (...parts: string[]) => pathToFileURL(join(dir, ...parts)).href;
  const check = (u: string, access: StorageAccessKind, roots = [root]) =>
    confineStorage([{ field: 'output_location', uri: u, access }], {
      fileRoots: roots,
      principal: policy('any').principal,
    });
  const codeOf = async (p: Promise<void>) =>
    p.then(
      () => 'allowed',
      (err: unknown) => (err instanceof FleetError ? `${err.code} ${err.param}` : String(err)),
    );

  beforeAll(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'interfleet-confinement-')));
    root = join(dir, 'root');
    await mkdir(join(root, 'real'), { recursive: true });
    await mkdir(join(dir, 'outside'));
    await writeFile(join(dir, 'outside', 'secret'), 's');
    await symlink(join(dir, 'outside'), join(root, 'out'));
    await symlink(join(dir, 'outside', 'secret'), join(root, 'secret-link'));
    await symlink(join(dir, 'outside', 'not-yet'), join(root, 'dangling'));
    await symlink('../outside', join(root, 'relative-out'));
    await symlink(join(root, 'real'), join(root, 'alias'));
    await symlink(join(dir, 'root'), join(dir, 'root-alias'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it.each([
    ['root/real/out.jsonl', 'write', 'allowed'],
    ['root/not/there/yet/', 'write', 'allowed'],
    ['root/alias/in.jsonl', 'read', 'allowed'],
    ['root/secret-link', 'read', 'forbidden output_location'],
    ['root/out/new/', 'write', 'forbidden output_location'],
    ['root/dangling', 'write', 'forbidden output_location'],
    ['root/relative-out/secret', 'read', 'forbidden output_location'],
    ['outside/secret', 'read', 'forbidden output_location'],
  ] as const)('%s (%s): %s', async (path, access, expected) => {
    expect(await codeOf(check(uri(...path.split('/')), access))).toBe(expected);
  });

  it('answers 400 for ".." before looking at the disk', async () => {
    expect(await codeOf(check(`${uri('root')}/real/%2E%2E/%2e%2e/outside/secret`, 'read'))).toBe(
      'bad_request output_location',
    );
  });

  it('takes a root that is itself a link by its real path', async () => {
    expect(await codeOf(check(uri('root', 'real', 'x'), 'read', [join(dir, 'root-alias')]))).toBe(
      'forbidden output_location',
    );
    expect(await codeOf(check(uri('root-alias', 'real', 'x'), 'read', [join(dir, 'root-alias')]))).toBe('allowed');
    expect(await realPathOf(join(dir, 'root-alias', 'real', 'no', 'such') + '/')).toBe(`${root}/real/no/such/`);
  });
});
