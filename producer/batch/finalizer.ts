/**
 * Finalisation: a stopped or finished batch becomes output.jsonl, errors.jsonl
 * and manifest.json, and ends completed / cancelled / expired.
 *
 * Steps, each safe to repeat after a crash at any point (principle 2):
 *   1. sources: walk the plan in index order; a chunk first contributes the
 *      segments it finished before yielding (chunk preemption; their record
 *      in the batch, BatchStore.allChunkSegments, in order), then a done
 *      chunk its output and error parts (named by their range after
 *      segments: segmentPartUris), and any other chunk (never admitted,
 *      skipped, or failed for good) a create-only remainder part of error
 *      lines for what never ran (./remainder.ts) at its place in the error
 *      file. The record is frozen by then: every chunk is settled, and a
 *      segment of a settled chunk is never recorded;
 *   2. concat: the output and error files, each an atomic replace with the
 *      same bytes on every run;
 *   3. manifest: written create-only LAST — once it exists, finalisation is
 *      complete and a re-run only ends the batch from it;
 *   4. end: one CAS to the final status with the counters and file URIs, drop
 *      the batch from the open index, then delete the parts (best effort: no
 *      later step needs them; the plan stays).
 */
import { batchFiles, isTerminal, type BatchState, type BatchStore } from '../../common/batch/batch-state.ts';
import { readPlan } from '../../common/batch/plan-file.ts';
import { partUris, segmentPartUris } from '../../common/contracts/batch.ts';
import type { Logger } from '../../common/logger.ts';
import { listAll, type Storage } from '../../common/storage/index.ts';
import { buildManifest, endStatus, manifestEndedAt, readManifest, writeManifest, type Manifest } from './manifest.ts';
import { notRunReason, remainderPartUri, unfinishedRange, writeRemainderPart } from './remainder.ts';

export type FinalizeStep = 'load' | 'sources' | 'concat_output' | 'concat_errors' | 'manifest' | 'end';

/** A finalisation failure, naming the step it happened in. */
export class FinalizeError extends Error {
  constructor(
    readonly step: FinalizeStep,
    readonly batchId: string,
    cause: unknown,
  ) {
    super(`finalising ${batchId} failed at step ${step}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = 'FinalizeError';
  }
}

export interface FinalizeDeps {
  store: BatchStore;
  storage: Storage;
  logger: Logger;
  now: () => number;
  signal?: AbortSignal;
  /** Parts deleted at once when cleaning up (default 16). */
  deleteConcurrency?: number;
}

export type FinalizeOutcome =
  | { outcome: 'ended'; status: Manifest['status']; manifest: Manifest }
  | { outcome: 'already_final' | 'missing' | 'not_stopped' };

interface Sources {
  output: string[];
  errors: string[];
  notRun: number;
  chunks: { total: number; done: number; notRun: number; failed: number };
}

async function step<T>(name: FinalizeStep, batchId: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw err instanceof FinalizeError ? err : new FinalizeError(name, batchId, err);
  }
}

/** Step 1: the parts to merge, in input order, writing remainder parts for chunks that never ran. */
async function collectSources(state: BatchState, deps: FinalizeDeps): Promise<Sources> {
  const { spec } = state;
  const files = batchFiles(spec.outputPrefix);
  const sources: Sources = { output: [], errors: [], notRun: 0, chunks: { total: 0, done: 0, notRun: 0, failed: 0 } };
  // Cancelled while validating: nothing was planned, so nothing ran and there is nothing to mark.
  if (!state.planned) return sources;
  const ending = endStatus(state);
  const stop = ending === 'completed' ? null : ending;
  const done = await deps.store.doneChunks(spec.id);
  const failures = await deps.store.chunkErrors(spec.id);
  const segments = await deps.store.allChunkSegments(spec.id);
  for await (const chunk of readPlan(deps.storage, state.plan?.planUri ?? files.plan, 0, { signal: deps.signal })) {
    sources.chunks.total++;
    const parts = partUris(files.parts, chunk.index);
    const segs = segments.get(chunk.index) ?? [];
    for (const seg of segs) {
      const kept = segmentPartUris(parts, seg.start, seg.end);
      sources.output.push(kept.outputPart);
      sources.errors.push(kept.errorPart);
    }
    const rest = unfinishedRange(chunk, segs);
    if (done(chunk.index)) {
      const last = segs.length === 0 ? parts : segmentPartUris(parts, rest.start, rest.end);
      sources.output.push(last.outputPart);
      sources.errors.push(last.errorPart);
      sources.chunks.done++;
      continue;
    }
    const failure = failures.get(chunk.index);
    const reason = notRunReason(chunk.index, failure, stop);
    if (failure !== undefined) sources.chunks.failed++;
    else sources.chunks.notRun++;
    const uri = remainderPartUri(files.parts, chunk.index, segs.length === 0 ? undefined : rest);
    await writeRemainderPart(
      deps.storage,
      uri,
      { batchId: spec.id, endpoint: spec.endpoint, model: spec.model, chunk: rest, reason },
      deps.signal,
    );
    sources.errors.push(uri);
    sources.notRun += rest.lines;
  }
  return sources;
}

/** Steps 1–3: the files and the manifest (or the manifest already there). */
async function produce(state: BatchState, deps: FinalizeDeps): Promise<Manifest> {
  const { spec } = state;
  const files = batchFiles(spec.outputPrefix);
  const existing = await step('manifest', spec.id, () => readManifest(deps.storage, files.manifest, deps.signal));
  if (existing) return existing;

  const sources = await step('sources', spec.id, () => collectSources(state, deps));
  const opts = { contentType: 'application/jsonl', signal: deps.signal };
  const output = await step('concat_output', spec.id, () => deps.storage.concat(files.output, sources.output, opts));
  const errors = await step('concat_errors', spec.id, () => deps.storage.concat(files.error, sources.errors, opts));
  const manifest = buildManifest(state, {
    output: { uri: files.output, bytes: output.size },
    errors: { uri: files.error, bytes: errors.size },
    notRun: sources.notRun,
    chunks: sources.chunks,
    endedAt: deps.now(),
  });
  const { completed, failed, total } = manifest.request_counts;
  if (completed + failed !== total) {
    // A bookkeeping bug somewhere upstream; the files are still right, so say so and go on.
    deps.logger.error({ batchId: spec.id, completed, failed, total }, 'request counts do not add up to the total');
  }
  return step('manifest', spec.id, () => writeManifest(deps.storage, files.manifest, manifest, deps.signal));
}

/** Deletes the parts (the plan stays). Best effort: failures are logged, never thrown. */
export async function deleteParts(
  storage: Storage,
  partsPrefix: string,
  logger: Logger,
  concurrency = 16,
): Promise<number> {
  let deleted = 0;
  try {
    let batch: Promise<void>[] = [];
    for await (const item of listAll(storage, partsPrefix)) {
      batch.push(storage.delete(item.uri).then(() => void deleted++));
      if (batch.length >= concurrency) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
  } catch (err) {
    logger.warn({ err, partsPrefix }, 'could not delete every part (they can be removed by hand)');
  }
  return deleted;
}

/** Step 4: the final status, from the manifest alone. */
async function end(state: BatchState, manifest: Manifest, deps: FinalizeDeps): Promise<void> {
  const batchId = state.spec.id;
  const files = batchFiles(state.spec.outputPrefix);
  const { moved, status } = await step('end', batchId, () =>
    deps.store.transition(batchId, ['finalizing', 'cancelling'], manifest.status, {
      [`${manifest.status}_at`]: manifestEndedAt(manifest),
      completed: manifest.request_counts.completed,
      failed: manifest.request_counts.failed,
      not_run: manifest.not_run,
      output_file: manifest.output_file.uri,
      error_file: manifest.error_file.uri,
      manifest_file: files.manifest,
    }),
  );
  if (!moved && status !== manifest.status) {
    deps.logger.warn({ batchId, status, manifest: manifest.status }, 'batch moved elsewhere while it was finalised');
  }
  await step('end', batchId, () => deps.store.close(batchId));
}

/**
 * Finalises a batch in `finalizing` or `cancelling` (see the module comment).
 * Throws FinalizeError naming the step that failed.
 */
export async function finalizeBatch(batchId: string, deps: FinalizeDeps): Promise<FinalizeOutcome> {
  const log = deps.logger.child({ batchId });
  const state = await step('load', batchId, () => deps.store.get(batchId));
  if (!state) return { outcome: 'missing' };
  const files = batchFiles(state.spec.outputPrefix);
  if (isTerminal(state.status)) {
    // A re-run after a crash past the transition finishes what followed it (both idempotent).
    // A batch that failed keeps its parts: they are what is left of its work.
    await step('end', batchId, () => deps.store.close(batchId));
    if (state.files.manifest !== null) await deleteParts(deps.storage, files.parts, log, deps.deleteConcurrency);
    return { outcome: 'already_final' };
  }
  if (state.status !== 'finalizing' && state.status !== 'cancelling') {
    log.warn({ status: state.status }, 'finalisation asked for a batch that is still running; ignored');
    return { outcome: 'not_stopped' };
  }
  const manifest = await produce(state, deps);
  await end(state, manifest, deps);
  const deleted = await deleteParts(deps.storage, files.parts, log, deps.deleteConcurrency);
  log.info({ status: manifest.status, counts: manifest.request_counts, deleted }, 'batch finalised');
  return { outcome: 'ended', status: manifest.status, manifest };
}

/** Ends a batch whose finalisation failed for good as `failed`, with the step and cause. */
export async function failFinalization(
  store: BatchStore,
  batchId: string,
  err: unknown,
  now: number,
): Promise<boolean> {
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof FinalizeError ? `finalize_${err.step}_failed` : 'finalize_failed';
  const { moved } = await store.transition(batchId, ['finalizing', 'cancelling'], 'failed', {
    failed_at: now,
    errors: JSON.stringify([{ code, message, line: null, param: null }]),
  });
  if (moved) await store.close(batchId);
  return moved;
}
