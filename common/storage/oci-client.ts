/**
 * Talking to OCI's SDK: building the client from the configured principal,
 * and reading its errors and dates (oci-storage.ts is the adapter on top).
 */
import * as common from 'oci-common';
import { ObjectStorageClient } from 'oci-objectstorage';
import type { OciStorageConfig } from './config.ts';
import { cancelled, codeForHttpStatus, isNetworkError, StorageError } from './errors.ts';

// OCI answers 404 for a bucket that is missing *or* not readable by the caller.
const bucketLevel404 = new Set(['BucketNotFound', 'NamespaceNotFound', 'NotAuthorizedOrNotFound']);
const serviceCodeOf = (err: unknown) => (err as { serviceCode?: unknown } | null)?.serviceCode;
export const statusOf = (err: unknown): number | undefined => {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
};
/** The answer to a create-only write when the object is there (PutObject, multipart create or commit). */
export const alreadyExists = (err: unknown) =>
  statusOf(err) === 412 || (statusOf(err) === 409 && serviceCodeOf(err) === 'IfNoneMatchFailed');

export function mapOciError(err: unknown, uri: string, signal?: AbortSignal): StorageError {
  if (err instanceof StorageError) return err;
  if (signal?.aborted) return cancelled(uri, signal);
  const message = `${uri}: ${err instanceof Error ? err.message : String(err)}`;
  const status = statusOf(err);
  const service = serviceCodeOf(err);
  let code = status === undefined ? (isNetworkError(err) ? 'unavailable' : 'internal') : codeForHttpStatus(status);
  if (status === 404 && typeof service === 'string' && bucketLevel404.has(service)) code = 'permission_denied';
  if (status === 409) code = 'unavailable'; // a concurrent update of the same object: try again
  return new StorageError(code, message, { uri, cause: err });
}

/**
 * oci-common turns date headers into "Y-M-DTH:MM:SSZ" built from *local*
 * time fields, hours unpadded (formatDateToRFC3339), though typed as Date:
 * read the fields back as local time. Undefined if it is not that shape.
 */
export function sdkDate(value: unknown): Date | undefined {
  if (value instanceof Date) return value;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})Z$/.exec(String(value));
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return new Date(y, mo - 1, d, h, mi, sec);
}

export async function buildClient(config: OciStorageConfig, provider?: common.AuthenticationDetailsProvider) {
  const auth = provider ?? (await providerFor(config));
  const client = new ObjectStorageClient({ authenticationDetailsProvider: auth });
  if (config.endpoint) client.endpoint = config.endpoint;
  else if (config.region) client.regionId = config.region;
  return client;
}

async function providerFor(config: OciStorageConfig): Promise<common.AuthenticationDetailsProvider> {
  switch (config.auth) {
    case 'config-file':
      return new common.ConfigFileAuthenticationDetailsProvider(config.configFile, config.profile);
    case 'instance-principal':
      return new common.InstancePrincipalsAuthenticationDetailsProviderBuilder().build();
    case 'workload-identity':
      return new common.OkeWorkloadIdentityAuthenticationDetailsProvider.OkeWorkloadIdentityAuthenticationDetailsProviderBuilder().build();
    case 'resource-principal':
      return common.ResourcePrincipalAuthenticationDetailsProvider.builder();
    default: {
      const unknown: never = config.auth;
      throw new Error(`unknown OCI auth kind: ${String(unknown)}`);
    }
  }
}
