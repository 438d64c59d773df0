/**
 * Public surface of the storage adapters: import from here, not from the
 * files behind it.
 */
export {
  fileStorageConfigSchema,
  gcsStorageConfigSchema,
  ociAuthKinds,
  ociStorageConfigSchema,
  storageConfigSchema,
  type FileStorageConfig,
  type GcsStorageConfig,
  type OciStorageConfig,
  type StorageConfig,
} from './config.ts';
export { isStorageError, StorageError, storageErrorCodes, type StorageErrorCode } from './errors.ts';
export { createFileStorage } from './file-storage.ts';
// The cloud adapters themselves are imported by the registry on first use (see registry.ts).
export type { GcsStorageDeps } from './gcs-storage.ts';
export type { OciStorageDeps } from './oci-storage.ts';
export { createStorage, type StorageDeps, type StorageRegistry } from './registry.ts';
export {
  listAll,
  maxPageSize,
  type CallOptions,
  type ListItem,
  type ListOptions,
  type ListPage,
  type ReadOptions,
  type Storage,
  type StorageObject,
  type WriteOptions,
  type WriteResult,
} from './storage.ts';
export {
  formatStorageUri,
  objectUriSchema,
  parseObjectUri,
  parseStorageUri,
  storageSchemes,
  storageUriSchema,
  type StorageScheme,
  type StorageUri,
} from './uri.ts';
