/**
 * The one storage registry: a switch on the URI's scheme, adapters built on
 * first use (a file://-only fleet never loads cloud credentials), and the
 * cloud SDKs imported then too: @google-cloud/storage and the OCI packages
 * cost a process 7–12 MiB of RSS (`npm run bench:producer-memory`) it need not carry when it never meets their scheme. The
 * returned object is itself a Storage that routes each call, so callers
 * hold one value for every scheme.
 */
import { storageConfigSchema, type StorageConfig } from './config.ts';
import { StorageError } from './errors.ts';
import { createFileStorage } from './file-storage.ts';
import type { GcsStorageDeps } from './gcs-storage.ts';
import type { OciStorageDeps } from './oci-storage.ts';
import type { Storage } from './storage.ts';
import { parseStorageUri, type StorageScheme } from './uri.ts';

export interface StorageDeps {
  gcs?: GcsStorageDeps;
  oci?: OciStorageDeps;
}

export interface StorageRegistry extends Storage {
  /** The adapter serving `uri`'s scheme; rejects with StorageError('invalid_uri'). */
  storageFor(uri: string): Promise<Storage>;
}

export function createStorage(
  config: StorageConfig = storageConfigSchema.parse({}),
  deps: StorageDeps = {},
): StorageRegistry {
  const adapters = new Map<StorageScheme, Promise<Storage>>();

  async function build(scheme: StorageScheme): Promise<Storage> {
    switch (scheme) {
      case 'file':
        return createFileStorage(config.file);
      case 'gs':
        return (await import('./gcs-storage.ts')).createGcsStorage(config.gcs, deps.gcs);
      case 'oci':
        return (await import('./oci-storage.ts')).createOciStorage(config.oci, deps.oci);
      default: {
        const unknown: never = scheme;
        throw new Error(`unknown storage scheme: ${String(unknown)}`);
      }
    }
  }

  async function storageFor(uri: string): Promise<Storage> {
    const { scheme } = parseStorageUri(uri);
    let adapter = adapters.get(scheme);
    if (!adapter) {
      adapter = build(scheme);
      adapters.set(scheme, adapter);
      // A failed build (a bad credential file) is tried again by the next call, not cached.
      adapter.catch(() => adapters.delete(scheme));
    }
    return adapter;
  }

  return {
    storageFor,
    stat: async (uri, opts) => (await storageFor(uri)).stat(uri, opts),
    read: async (uri, opts) => (await storageFor(uri)).read(uri, opts),
    writeIfAbsent: async (uri, body, opts) => (await storageFor(uri)).writeIfAbsent(uri, body, opts),
    list: async (prefixUri, opts) => (await storageFor(prefixUri)).list(prefixUri, opts),
    delete: async (uri, opts) => (await storageFor(uri)).delete(uri, opts),
    async concat(targetUri, sourceUris, opts) {
      const { scheme } = parseStorageUri(targetUri);
      const other = sourceUris.find((uri) => parseStorageUri(uri).scheme !== scheme);
      if (other !== undefined) {
        throw new StorageError('invalid_uri', `concat cannot mix ${other} into ${targetUri}: one scheme only`, {
          uri: other,
        });
      }
      return (await storageFor(targetUri)).concat(targetUri, sourceUris, opts);
    },
  };
}
