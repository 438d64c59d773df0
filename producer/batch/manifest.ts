/**
 * manifest.json: the record of a finished batch, written create-only as the
 * LAST step of finalisation. Its presence means the output and error files
 * are complete; it carries everything needed to end the batch in Redis, so a
 * finalisation re-run after a crash ends the batch from it alone, without
 * the parts (which may already be deleted).
 */
import { z } from 'zod';
import { batchEndpoints } from '../../common/contracts/batch.ts';
import type { BatchState } from '../../common/batch/batch-state.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import pkg from '../../package.json' with { type: 'json' };

export const manifestEndStatuses = ['completed', 'cancelled', 'expired'] as const;
export type ManifestEndStatus = (typeof manifestEndStatuses)[number];

const ms = z.number().int().nonnegative();
const at = ms.nullable();
const count = z.number().int().nonnegative();
const file = z.object({ uri: z.string().min(1), bytes: count });

export const manifestSchema = z.object({
  manifest_version: z.literal(1),
  batch_id: z.string().min(1),
  /** The status the batch ends in. */
  status: z.enum(manifestEndStatuses),
  /** Why admission stopped early, if it did. */
  stop_reason: z.enum(['cancelled', 'expired']).nullable(),
  endpoint: z.enum(batchEndpoints),
  model: z.string().min(1),
  source: z.string(),
  input: z.object({
    uri: z.string().min(1),
    /** Null when the batch never got planned (cancelled while validating). */
    objects: count.nullable(),
    bytes: count.nullable(),
    sha256: z.string().nullable(),
    invalid_lines: count.nullable(),
    duplicate_lines: count.nullable(),
  }),
  output_file: file,
  error_file: file,
  /** completed + failed = total; failed includes not_run. */
  request_counts: z.object({ total: count, completed: count, failed: count }),
  /** Lines that never ran (cancel, expiry, a chunk that failed for good): in the error file. */
  not_run: count,
  chunks: z.object({ total: count, done: count, not_run: count, failed: count }),
  timings: z.object({
    created_at: ms,
    in_progress_at: at,
    finalizing_at: at,
    cancelling_at: at,
    completed_at: at,
    cancelled_at: at,
    expired_at: at,
    durations_ms: z.object({
      /** created → in_progress (planning). */
      validating: at,
      /** in_progress → finalizing / cancelling. */
      in_progress: at,
      /** finalizing / cancelling → the end. */
      finalizing: at,
      total: ms,
    }),
  }),
  /** Lines run (completed + failed − not_run) per second of in_progress time. */
  lines_per_second: z.number().nonnegative().nullable(),
  interfleet_version: z.string(),
});
export type Manifest = z.infer<typeof manifestSchema>;

export const interfleetVersion: string = pkg.version;

/** What finalisation learnt, beside the batch state. */
export interface ManifestFacts {
  output: { uri: string; bytes: number };
  errors: { uri: string; bytes: number };
  notRun: number;
  chunks: { total: number; done: number; notRun: number; failed: number };
  endedAt: number;
}

/** The status a batch in `finalizing` / `cancelling` ends in. */
export function endStatus(state: Pick<BatchState, 'status' | 'stop'>): ManifestEndStatus {
  if (state.status === 'cancelling' || state.stop === 'cancelled') return 'cancelled';
  return state.stop === 'expired' ? 'expired' : 'completed';
}

const span = (from: number | undefined, to: number | undefined): number | null =>
  from === undefined || to === undefined ? null : Math.max(0, to - from);

/** Pure: the manifest of a batch about to end. */
export function buildManifest(state: BatchState, facts: ManifestFacts): Manifest {
  const { spec, timestamps: t, counters, plan } = state;
  const status = endStatus(state);
  const stoppedAt = t.finalizing_at ?? t.cancelling_at;
  const inProgressMs = span(t.in_progress_at, stoppedAt);
  const failed = counters.failed + facts.notRun;
  const ran = counters.completed + counters.failed;
  return manifestSchema.parse({
    manifest_version: 1,
    batch_id: spec.id,
    status,
    stop_reason: state.stop,
    endpoint: spec.endpoint,
    model: spec.model,
    source: spec.source,
    input: {
      uri: spec.input,
      objects: plan?.objects ?? null,
      bytes: plan?.inputBytes ?? null,
      sha256: plan?.sha256 ?? null,
      invalid_lines: plan?.invalidLines ?? null,
      duplicate_lines: plan?.duplicateLines ?? null,
    },
    output_file: { uri: facts.output.uri, bytes: facts.output.bytes },
    error_file: { uri: facts.errors.uri, bytes: facts.errors.bytes },
    request_counts: { total: counters.total, completed: counters.completed, failed },
    not_run: facts.notRun,
    chunks: {
      total: facts.chunks.total,
      done: facts.chunks.done,
      not_run: facts.chunks.notRun,
      failed: facts.chunks.failed,
    },
    timings: {
      created_at: spec.createdAt,
      in_progress_at: t.in_progress_at ?? null,
      finalizing_at: t.finalizing_at ?? null,
      cancelling_at: t.cancelling_at ?? null,
      completed_at: status === 'completed' ? facts.endedAt : null,
      cancelled_at: status === 'cancelled' ? facts.endedAt : null,
      expired_at: status === 'expired' ? facts.endedAt : null,
      durations_ms: {
        validating: span(spec.createdAt, t.in_progress_at),
        in_progress: inProgressMs,
        finalizing: span(stoppedAt, facts.endedAt),
        total: Math.max(0, facts.endedAt - spec.createdAt),
      },
    },
    lines_per_second: inProgressMs ? Math.round((ran / inProgressMs) * 1000 * 100) / 100 : null,
    interfleet_version: interfleetVersion,
  });
}

export function manifestEndedAt(m: Manifest): number {
  return m.timings.completed_at ?? m.timings.cancelled_at ?? m.timings.expired_at ?? m.timings.created_at;
}

/** The stored manifest, or undefined when there is none yet. */
export async function readManifest(
  storage: Pick<Storage, 'read'>,
  uri: string,
  signal?: AbortSignal,
): Promise<Manifest | undefined> {
  let stream;
  try {
    stream = await storage.read(uri, { signal });
  } catch (err) {
    if (isStorageError(err, 'not_found')) return undefined;
    throw err;
  }
  const pieces: Buffer[] = [];
  for await (const piece of stream as AsyncIterable<Buffer>) pieces.push(piece);
  const parsed = manifestSchema.safeParse(JSON.parse(Buffer.concat(pieces).toString('utf8')));
  if (!parsed.success) {
    throw new Error(
      `manifest ${uri} is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

/** Writes the manifest create-only; when one is there already (a concurrent run), that one wins. */
export async function writeManifest(
  storage: Pick<Storage, 'read' | 'writeIfAbsent'>,
  uri: string,
  manifest: Manifest,
  signal?: AbortSignal,
): Promise<Manifest> {
  const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  const { created } = await storage.writeIfAbsent(uri, body, { contentType: 'application/json', signal });
  if (created) return manifest;
  const stored = await readManifest(storage, uri, signal);
  if (!stored) throw new Error(`manifest ${uri} vanished right after a create-only write found it`);
  return stored;
}
