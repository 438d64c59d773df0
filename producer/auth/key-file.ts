/**
 * The API key file: who may call the producer, as a tenant and scopes per
 * key. YAML or JSON (a mounted Kubernetes Secret, or the same text in an env
 * var). A plaintext `key` is hashed as it is read and dropped; only SHA-256
 * digests are kept, so a heap dump or a log of the table holds no key.
 *
 *   keys:
 *     - id: team-a-ci            # shown in logs, never the key
 *       sha256: 5e884898da28...  # or `key: <the key itself>`
 *       tenant: team-a
 *       scopes: [infer, batch, read]
 *       storage: [gs://bucket/tenants/{tenant}/]   # or `any`; default none
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { scopes, type Principal } from '../../common/auth/principal.ts';

/** A key the table knows: its id, its digest and who it names. */
export interface KeyEntry {
  readonly id: string;
  readonly digest: Buffer;
  readonly principal: Principal;
}

export const keyDigest = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

const storagePrefixSchema = z
  .string()
  .regex(
    /^(gs:\/\/[^/@]+\/|oci:\/\/[^/@]+@[^/]+\/|file:\/\/\/)(.*\/)?$/,
    'a storage prefix is gs://bucket/[prefix/], oci://bucket@namespace/[prefix/] or file:///folder/, ending in /',
  );

const keyEntrySchema = z
  .strictObject(
    {
      id: z
        .string({ error: 'id is required: a name for the key, shown in logs' })
        .regex(/^[A-Za-z0-9_.:@-]{1,64}$/, 'id is 1-64 letters, digits or _ . : @ -'),
      key: z.string().min(16, 'key is at least 16 characters').optional(),
      sha256: z
        .string({ error: 'sha256 is a string: quote it (YAML reads an all-digit hex as a number)' })
        .regex(/^[0-9a-fA-F]{64}$/, 'sha256 is the hex SHA-256 digest of the key (64 hex digits)')
        .optional(),
      tenant: z
        .string({ error: 'tenant is required' })
        .min(1, 'tenant must not be empty')
        .max(64, 'tenant is at most 64 characters'),
      scopes: z.array(z.enum(scopes, { error: `a scope is one of ${scopes.join(', ')}` })).min(1, 'name a scope'),
      storage: z
        .union([z.literal('any'), z.array(storagePrefixSchema)], {
          error: 'storage is `any` or a list of gs://, oci:// or file:// prefixes',
        })
        .optional(),
    },
    { error: (iss) => (iss.code === 'unrecognized_keys' ? `unsupported field(s): ${iss.keys.join(', ')}` : undefined) },
  )
  .superRefine((entry, ctx) => {
    if ((entry.key === undefined) === (entry.sha256 === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: 'give exactly one of key and sha256' });
    }
  });

const keyFileSchema = z.strictObject({ keys: z.array(keyEntrySchema, { error: 'keys must be a list' }) });

export class KeyFileError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid API keys:\n  - ${issues.join('\n  - ')}`);
    this.name = 'KeyFileError';
  }
}

/** Parses one key file's text; every problem at once, each with its path (`keys.2.scopes.0: ...`). */
export function parseKeyFile(text: string, source: string): KeyEntry[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new KeyFileError([`${source}: not YAML or JSON: ${(err as Error).message}`]);
  }
  const result = keyFileSchema.safeParse(doc ?? {});
  if (!result.success) {
    throw new KeyFileError(result.error.issues.map((i) => `${source}: ${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  return result.data.keys.map((k) => ({
    id: k.id,
    digest: k.sha256 !== undefined ? Buffer.from(k.sha256, 'hex') : keyDigest(k.key!),
    principal: {
      keyId: k.id,
      tenant: k.tenant,
      scopes: new Set(k.scopes),
      storage: k.storage === 'any' ? 'any' : { prefixes: k.storage ?? [] },
    },
  }));
}

/** Ids and keys must be unique across every source: a duplicate key would make its tenant ambiguous. */
export function checkUnique(entries: readonly KeyEntry[]): void {
  const problems: string[] = [];
  entries.forEach((e, i) => {
    const first = entries.findIndex((o) => o.id === e.id);
    if (first !== i) problems.push(`key id '${e.id}' is used twice`);
    const same = entries.findIndex((o) => o.digest.equals(e.digest));
    if (same !== i) problems.push(`keys '${entries[same]!.id}' and '${e.id}' are the same key`);
  });
  if (problems.length > 0) throw new KeyFileError(problems);
}
