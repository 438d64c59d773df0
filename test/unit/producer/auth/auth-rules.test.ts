/** The pure parts of producer/auth/: key file parsing, the lookup table, credentials, route scopes, the start-up rule. */
import { describe, expect, it } from 'vitest';
import { anonymousPrincipal, type Principal } from '../../../../common/auth/principal.ts';
import { parseConfig } from '../../../../common/config.ts';
import { decideAuth, isLoopback } from '../../../../producer/auth/auth-mode.ts';
import { presentedKey } from '../../../../producer/auth/credentials.ts';
import { checkUnique, keyDigest, parseKeyFile } from '../../../../producer/auth/key-file.ts';
import { KeyTable } from '../../../../producer/auth/key-table.ts';
import { loadKeyTable } from '../../../../producer/auth/load-keys.ts';
import { routeAccess } from '../../../../producer/auth/route-access.ts';
import { canSee, jobTenant, listTenant } from '../../../../producer/auth/tenant.ts';

const KEY = 'a-long-enough-key-0001';

describe('key file', () => {
  it('keeps digests only and maps storage grants', () => {
    const [plain, hashed] = parseKeyFile(
      JSON.stringify({
        keys: [
          { id: 'a', key: KEY, tenant: 't1', scopes: ['infer', 'read'], storage: ['gs://b/tenants/{tenant}/'] },
          {
            id: 'b',
            sha256: keyDigest('another-key-00000002').toString('hex'),
            tenant: 't2',
            scopes: ['admin'],
            storage: 'any',
          },
        ],
      }),
      'keys.json',
    );
    expect(plain!.digest.equals(keyDigest(KEY))).toBe(true);
    expect(JSON.stringify(plain)).not.toContain(KEY);
    expect(plain!.principal).toEqual({
      keyId: 'a',
      tenant: 't1',
      scopes: new Set(['infer', 'read']),
      storage: { prefixes: ['gs://b/tenants/{tenant}/'] },
    });
    expect(hashed!.principal.storage).toBe('any');
    const [none] = parseKeyFile(`keys:\n  - { id: c, key: ${KEY}, tenant: t, scopes: [read] }\n`, 'f');
    expect(none!.principal.storage).toEqual({ prefixes: [] });
  });

  it('names every bad entry and field at once', () => {
    const text = `keys:
  - { id: ok, key: ${KEY}, tenant: t, scopes: [read] }
  - { id: x, key: ${KEY}, sha256: '${'0'.repeat(64)}', tenant: t, scopes: [read] }
  - { id: w, sha256: ${'1'.repeat(64)}, tenant: t, scopes: [read] }
  - { id: y, key: ${KEY}, tenant: t, scopes: [read, fly], storage: [gs://bucket] }
  - { id: z, key: ${KEY}, scopes: [], extra: 1 }
`;
    expect(() => parseKeyFile(text, 'k.yaml')).toThrow(
      [
        'invalid API keys:',
        '  - k.yaml: keys.1.key: give exactly one of key and sha256',
        '  - k.yaml: keys.2.sha256: sha256 is a string: quote it (YAML reads an all-digit hex as a number)',
        '  - k.yaml: keys.3.scopes.1: a scope is one of infer, batch, train, read, admin',
        '  - k.yaml: keys.3.storage.0: a storage prefix is gs://bucket/[prefix/], oci://bucket@namespace/[prefix/] or file:///folder/, ending in /',
        '  - k.yaml: keys.4.tenant: tenant is required',
        '  - k.yaml: keys.4.scopes: name a scope',
        '  - k.yaml: keys.4: unsupported field(s): extra',
      ].join('\n'),
    );
  });

  it('refuses a duplicate id or the same key twice', () => {
    const entries = parseKeyFile(
      `keys:\n  - { id: a, key: ${KEY}, tenant: t, scopes: [read] }\n  - { id: b, sha256: ${keyDigest(KEY).toString('hex')}, tenant: u, scopes: [read] }\n`,
      'f',
    );
    expect(() => checkUnique(entries)).toThrow("keys 'a' and 'b' are the same key");
  });

  it('reads the file and the inline text together', () => {
    const table = loadKeyTable(
      {
        mode: 'auto',
        keysFile: '/secret/keys.yaml',
        keys: `keys: [{ id: b, key: another-key-00000002, tenant: u, scopes: [read] }]`,
      },
      () => `keys: [{ id: a, key: ${KEY}, tenant: t, scopes: [read] }]`,
    );
    expect(table.size).toBe(2);
    expect(table.find(KEY)?.keyId).toBe('a');
    expect(table.find('another-key-00000002')?.keyId).toBe('b');
    expect(table.find('unknown')).toBeUndefined();
    expect(() =>
      loadKeyTable({ mode: 'auto', keysFile: '/nope' }, () => {
        throw new Error('ENOENT');
      }),
    ).toThrow('producer.auth.keysFile: cannot read /nope: ENOENT');
  });

  it('finds a key wherever it is in the table', () => {
    const entries = Array.from({ length: 5 }, (_, i) => ({
      id: `k${i}`,
      digest: keyDigest(`key-${i}`),
      principal: { ...anonymousPrincipal, keyId: `k${i}` },
    }));
    const table = new KeyTable(entries);
    for (let i = 0; i < 5; i++) expect(table.find(`key-${i}`)?.keyId).toBe(`k${i}`);
  });
});

describe('credentials', () => {
  it.each([
    [undefined, undefined],
    ['Bearer abc', 'abc'],
    ['bearer  abc ', 'abc'],
    [`Basic ${Buffer.from('user:the-key').toString('base64')}`, 'the-key'],
    [`Basic ${Buffer.from('user:').toString('base64')}`, undefined],
    ['Token abc', undefined],
    ['Bearer', undefined],
  ])('%s → %s', (header, key) => expect(presentedKey(header)).toBe(key));
});

describe('route scopes', () => {
  it.each([
    ['GET', '/healthz', { kind: 'public' }],
    ['GET', '/metrics', { kind: 'public' }],
    ['GET', '/v1/models', { kind: 'key', anyOf: [], board: false }],
    ['POST', '/v1/chat/completions', { kind: 'key', anyOf: ['infer'], board: false }],
    ['POST', '/v1/batches', { kind: 'key', anyOf: ['batch'], board: false }],
    ['GET', '/v1/batches/:batch_id', { kind: 'key', anyOf: ['read', 'batch'], board: false }],
    ['POST', '/v1/training/jobs/:id/cancel', { kind: 'key', anyOf: ['train'], board: false }],
    ['GET', '/v1/scheduler/explain', { kind: 'key', anyOf: ['read'], board: false }],
    ['GET', '/admin/queues/api/queues', { kind: 'key', anyOf: ['read'], board: true }],
    ['PUT', '/admin/queues/api/queues/:queueName/retry/:queueStatus', { kind: 'key', anyOf: ['admin'], board: true }],
    ['DELETE', '/v1/something-new', { kind: 'key', anyOf: ['admin'], board: false }],
    ['GET', undefined, { kind: 'key', anyOf: [], board: false }],
  ] as const)('%s %s', (method, url, access) => expect(routeAccess(method, url)).toEqual(access));
});

describe('tenants', () => {
  const key = (tenant: string, ...scopes: Array<'infer' | 'admin'>): Principal => ({
    keyId: 'k',
    tenant,
    scopes: new Set(scopes),
    storage: { prefixes: [] },
  });
  it('takes the tenant from the key; only admin names another', () => {
    expect(jobTenant(key('a', 'infer'), undefined)).toBe('a');
    expect(jobTenant(key('a', 'infer'), 'a')).toBe('a');
    expect(() => jobTenant(key('a', 'infer'), 'b')).toThrow(/^tenant: API key 'k' belongs to tenant 'a'/);
    expect(jobTenant(key('ops', 'admin'), 'b')).toBe('b');
    expect(jobTenant(anonymousPrincipal, undefined)).toBe('default');
    expect(canSee(key('a', 'infer'), 'b')).toBe(false);
    expect(canSee(key('a', 'admin'), 'b')).toBe(true);
    expect(listTenant(key('a', 'infer'))).toBe('a');
    expect(listTenant(anonymousPrincipal)).toBeUndefined();
  });
});

describe('start-up rule', () => {
  it.each(['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost'])('%s is loopback', (h) =>
    expect(isLoopback(h)).toBe(true),
  );
  it.each(['0.0.0.0', '::', '10.0.0.4', 'producer.internal'])('%s is not', (h) => expect(isLoopback(h)).toBe(false));

  it('decides from mode, host and keys', () => {
    expect(decideAuth('auto', '0.0.0.0', 2)).toEqual({ enabled: true, keys: 2 });
    expect(decideAuth('auto', '127.0.0.1', 0)).toMatchObject({
      enabled: false,
      notice: expect.stringMatching(/^auth is off: .*INTERFLEET_API_KEYS_FILE/),
    });
    expect(() => decideAuth('auto', '0.0.0.0', 0)).toThrow(/^refusing to listen on 0\.0\.0\.0 without API keys/);
    expect(decideAuth('none', '0.0.0.0', 0)).toMatchObject({ enabled: false });
    expect(() => decideAuth('none', '0.0.0.0', 1)).toThrow(/mode is none but 1 API key/);
    expect(() => decideAuth('keys', '127.0.0.1', 0)).toThrow(/mode is keys but no API keys/);
  });

  it('parses producer.auth: none from YAML and the env vars', () => {
    expect(parseConfig({}, 'producer:\n  auth: none\n').producer.auth).toEqual({ mode: 'none' });
    expect(parseConfig({ INTERFLEET_API_KEYS_FILE: '/k.yaml' }, 'producer:\n  auth: none\n').producer.auth).toEqual({
      mode: 'none',
      keysFile: '/k.yaml',
    });
    expect(parseConfig({ INTERFLEET_AUTH: 'keys', INTERFLEET_API_KEYS: 'keys: []' }).producer.auth).toEqual({
      mode: 'keys',
      keys: 'keys: []',
    });
    expect(() => parseConfig({ INTERFLEET_AUTH: 'maybe' })).toThrow(
      'producer.auth.mode: auth mode is auto, keys or none',
    );
    expect(parseConfig({}).producer.rateLimit).toEqual({ max: 6000, windowMs: 60_000, tenants: {} });
  });
});
