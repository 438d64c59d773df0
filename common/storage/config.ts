/**
 * Storage adapter settings, meant to sit under `storage:` in the one config
 * schema (common/config.ts). Credentials are never configured here: each SDK
 * finds them through its standard chain (GCS: Application Default
 * Credentials, i.e. GKE Workload Identity in the cluster; OCI: the chosen
 * `auth` below). Every default is here; with none set, file:// is off (no
 * roots) and the cloud adapters are only built when a gs:// or oci:// URI is
 * first used.
 */
import { z } from 'zod';

const MiB = 1024 * 1024;

export const fileStorageConfigSchema = z.object({
  /**
   * Absolute folders that file:// URIs must lie under (their real paths too:
   * a symbolic link out of a root is refused); empty turns file:// off.
   * Checked by the API before anything is read or written, and again by
   * the file adapter at every open. `npm start` sets its data directory when
   * none is configured (env INTERFLEET_FILE_ROOTS, separated by `:`).
   */
  roots: z.array(z.string().regex(/^\//, 'roots are absolute paths')).default([]),
});

export const gcsStorageConfigSchema = z
  .object({
    /** Billing/quota project; ADC's project when unset. */
    projectId: z.string().min(1).optional(),
    /** Another JSON API endpoint: Private Service Connect, or a local stand-in in tests. */
    apiEndpoint: z.url().optional(),
    /** `adc`: Application Default Credentials; `none`: anonymous, only for a local apiEndpoint. */
    auth: z.enum(['adc', 'none']).default('adc'),
  })
  .superRefine((gcs, ctx) => {
    if (gcs.auth === 'none' && !gcs.apiEndpoint) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'auth "none" needs apiEndpoint (a local server)' });
    }
  });

export const ociAuthKinds = ['config-file', 'instance-principal', 'workload-identity', 'resource-principal'] as const;

export const ociStorageConfigSchema = z.object({
  /** Region id (e.g. eu-frankfurt-1); instance/resource principals know their own. */
  region: z.string().min(1).optional(),
  /** Overrides the regional endpoint (a private endpoint, or a local stand-in in tests). */
  endpoint: z.url().optional(),
  /**
   * `config-file`: ~/.oci/config (or `configFile`, `profile`);
   * `instance-principal`: the node's identity (OKE node pools, VMs);
   * `workload-identity`: OKE Workload Identity (the pod's service account);
   * `resource-principal`: OCI Functions / Container Instances.
   */
  auth: z.enum(ociAuthKinds).default('config-file'),
  configFile: z.string().min(1).optional(),
  profile: z.string().min(1).optional(),
  /**
   * Uploads of unknown length (streams) are sent in parts of this size; an
   * upload holds at most two parts in memory. OCI needs every part but the
   * last to be at least 10 MiB, and allows 10,000: 16 MiB parts allow 156 GiB.
   */
  partSizeBytes: z
    .number()
    .int()
    .min(10 * MiB)
    .max(50 * 1024 * MiB)
    .default(16 * MiB),
});

export const storageConfigSchema = z.object({
  file: fileStorageConfigSchema.prefault({}),
  gcs: gcsStorageConfigSchema.prefault({}),
  oci: ociStorageConfigSchema.prefault({}),
});

export type FileStorageConfig = z.infer<typeof fileStorageConfigSchema>;
export type GcsStorageConfig = z.infer<typeof gcsStorageConfigSchema>;
export type OciStorageConfig = z.infer<typeof ociStorageConfigSchema>;
export type StorageConfig = z.infer<typeof storageConfigSchema>;
