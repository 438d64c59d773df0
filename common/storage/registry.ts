/**
 * The one storage registry: a switch on the URI's scheme, adapters built on
 * first use (a file://-only fleet never loads cloud credentials). The
 * returned object is itself a Storage that routes each call, so callers
 * hold one value for every scheme.
 */
import { storageConfigSchema, type StorageConfig } from './config.ts';
import { StorageError } from './errors.ts';
import { createFileStorage } from './file-storage.ts';
import { createGcsStorage, type GcsStorageDeps } from './gcs-storage.ts';
import { createOciStorage, type OciStorageDeps } from './oci-storage.ts';
import type { Storage } from './storage.ts';
import { parseStorageUri, type StorageScheme } from './uri.ts';

export interface StorageDeps {
  gcs?: GcsStorageDeps;
  oci?: OciStorageDeps;
}

export interface StorageRegistry extends Storage {
  /** The adapter serving `uri`'s scheme; throws StorageError('invalid_uri'). */
  storageFor(uri: string): Storage;
}

export function createStorage(
  config: StorageConfig = storageConfigSchema.parse({}),
  deps: StorageDeps = {},
): StorageRegistry {
  const adapters = new Map<StorageScheme, Storage>();

  function build(scheme: StorageScheme): Storage {
    switch (scheme) {
      case 'file':
        return createFileStorage(config.file);
      case 'gs':
        return createGcsStorage(config.gcs, deps.gcs);
      case 'oci':
        return createOciStorage(config.oci, deps.oci);
      default: {
        const unknown: never = scheme;
        throw new Error(`unknown storage scheme: ${String(unknown)}`);
      }
    }
  }

  function storageFor(uri: string): Storage {
    const { scheme } = parseStorageUri(uri);
    let adapter = adapters.get(scheme);
    if (!adapter) adapters.set(scheme, (adapter = build(scheme)));
    return adapter;
  }

  return {
    storageFor,
    stat: async (uri, opts) => storageFor(uri).stat(uri, opts),
    read: async (uri, opts) => storageFor(uri).read(uri, opts),
    writeIfAbsent: async (uri, body, opts) => storageFor(uri).writeIfAbsent(uri, body, opts),
    list: async (prefixUri, opts) => storageFor(prefixUri).list(prefixUri, opts),
    delete: async (uri, opts) => storageFor(uri).delete(uri, opts),
    async concat(targetUri, sourceUris, opts) {
      const { scheme } = parseStorageUri(targetUri);
      const other = sourceUris.find((uri) => parseStorageUri(uri).scheme !== scheme);
      if (other !== undefined) {
        throw new StorageError('invalid_uri', `concat cannot mix ${other} into ${targetUri}: one scheme only`, {
          uri: other,
        });
      }
      return storageFor(targetUri).concat(targetUri, sourceUris, opts);
    },
  };
}
