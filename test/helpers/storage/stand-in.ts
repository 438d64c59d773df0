/**
 * Runs a storage stand-in server (gcs-server.ts, oci-server.ts) in a child
 * process, so that the server's copy of every object stays out of the test
 * process: the conformance suite measures the adapter's own memory while it
 * streams large objects. Control (deny a bucket, read request counts) goes
 * over IPC.
 */
import { fileURLToPath } from 'node:url';
import { Child } from '../../bench/children.ts';
import type { StandInOptions } from './memory-store.ts';

export interface StandIn {
  url: string;
  /** Makes every request on `bucket` answer 403 (or serve again with `denied: false`). */
  deny(bucket: string, denied?: boolean): Promise<void>;
  /** Requests served so far, by operation (e.g. `compose`, `mpu-commit`, `media-range`). */
  counts(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export async function startStandIn(kind: 'gcs' | 'oci', options: StandInOptions): Promise<StandIn> {
  const entry = fileURLToPath(new URL('./stand-in.child.ts', import.meta.url));
  const child = Child.start(`${kind}-stand-in`, entry, {
    STAND_IN_KIND: kind,
    STAND_IN_OPTIONS: JSON.stringify(options),
  });
  const ready = await child.ready.catch(async (err: unknown) => {
    await child.stop(1000);
    throw err;
  });
  return {
    url: String(ready.url),
    deny: async (bucket, denied = true) => void (await child.request({ type: 'deny', bucket, denied })),
    counts: async () => (await child.request({ type: 'counts' })).counts as Record<string, number>,
    close: () => child.stop(),
  };
}
