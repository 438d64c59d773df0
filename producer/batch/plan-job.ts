/**
 * The plan job: a batch in `validating` has its input streamed once into a
 * plan (./plan-to-storage.ts) and moves to `in_progress`, or to `failed`
 * with a reason naming the URI and the cause. It never leaves a batch in
 * `validating` without one: input problems fail it at once, and a retryable
 * failure fails it on the job's last attempt.
 *
 * A batch that leaves `validating` meanwhile (cancelled, expired) is left
 * alone: its status is polled while planning runs, and planning is aborted
 * when it changes; every transition here is a compare-and-set from
 * `validating`, so a late plan never moves a batch someone else moved.
 */
import {
  batchFiles,
  type BatchError,
  type BatchSpec,
  type BatchStatus,
  type BatchStore,
  type PlanSummary,
} from '../../common/batch/batch-state.ts';
import type { Config } from '../../common/config.ts';
import type { Logger } from '../../common/logger.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import { planToStorage } from './plan-to-storage.ts';

export interface PlanJobDeps {
  batch: Pick<Config['batch'], 'chunkLines' | 'chunkBytes'>;
  store: BatchStore;
  storage: Storage;
  logger: Logger;
  now: () => number;
  /** Drain / job cancellation: planning stops, and the error is rethrown as is. */
  signal?: AbortSignal;
  /** How often the batch status is checked while planning (default 1000 ms). */
  statusPollMs?: number;
}

export type PlanJobOutcome =
  | { outcome: 'planned'; total: number; chunks: number }
  | { outcome: 'failed'; error: BatchError }
  | { outcome: 'left_validating'; status: BatchStatus | undefined };

/**
 * Pure: the batch error for a planning failure that retrying cannot fix, or
 * undefined when it may (a retryable storage error, or anything unknown).
 */
export function planFailure(err: unknown, spec: Pick<BatchSpec, 'input'>, planUri: string): BatchError | undefined {
  if (!isStorageError(err) || err.retryable || err.code === 'cancelled') return undefined;
  // Planning writes one object, the plan, under the output prefix: a failure there is the output's.
  const output = err.uri === planUri;
  const side = output ? 'output' : 'input';
  const uri = output ? planUri : spec.input;
  return {
    code: `${side}_${err.code}`,
    message: `${side} ${uri}: ${err.code.replaceAll('_', ' ')} (${err.message})`,
    line: null,
    param: output ? 'output_location' : 'input_file',
  };
}

async function fail(store: BatchStore, batchId: string, error: BatchError, now: number, fields = {}): Promise<boolean> {
  const { moved } = await store.transition(batchId, ['validating'], 'failed', {
    ...fields,
    failed_at: now,
    errors: JSON.stringify([error]),
  });
  if (moved) await store.close(batchId);
  return moved;
}

/** Aborts `controller` once the batch is no longer `validating`; returns a stop function. */
function watchStatus(
  store: BatchStore,
  batchId: string,
  everyMs: number,
  controller: AbortController,
  onLeft: (status: BatchStatus | undefined) => void,
  log: Logger,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const check = async (): Promise<void> => {
    try {
      const status = (await store.get(batchId))?.status;
      if (status !== 'validating') {
        onLeft(status);
        controller.abort(new Error(`batch ${batchId} is ${status ?? 'gone'}`));
        return;
      }
    } catch (err) {
      log.debug({ err }, 'could not check the batch status while planning');
    }
    if (!stopped) timer = setTimeout(() => void check(), everyMs);
  };
  timer = setTimeout(() => void check(), everyMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export async function runPlanJob(
  batchId: string,
  deps: PlanJobDeps,
  opts: { lastAttempt: boolean },
): Promise<PlanJobOutcome> {
  const { store, now } = deps;
  const log = deps.logger.child({ batchId });
  const state = await store.get(batchId);
  if (state?.status !== 'validating') return { outcome: 'left_validating', status: state?.status };
  const { spec } = state;
  const files = batchFiles(spec.outputPrefix);

  const controller = new AbortController();
  const onOuterAbort = (): void => controller.abort(deps.signal?.reason);
  deps.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let left: { status: BatchStatus | undefined } | undefined;
  const stopWatch = watchStatus(
    store,
    batchId,
    deps.statusPollMs ?? 1000,
    controller,
    (status) => (left = { status }),
    log,
  );
  let result: Awaited<ReturnType<typeof planToStorage>>;
  try {
    result = await planToStorage(deps.storage, spec.input, files.plan, {
      endpoint: spec.endpoint,
      model: spec.model,
      chunkLines: deps.batch.chunkLines,
      chunkBytes: deps.batch.chunkBytes,
      signal: controller.signal,
    });
  } catch (err) {
    if (left) {
      log.info({ status: left.status }, 'the batch left validating while it was planned; planning stopped');
      return { outcome: 'left_validating', status: left.status };
    }
    if (deps.signal?.aborted) throw err; // draining: the job runs again elsewhere
    const error = planFailure(err, spec, files.plan);
    if (error || opts.lastAttempt) {
      const reason = error ?? {
        code: 'planning_failed',
        message: `planning ${spec.input} failed after every attempt: ${err instanceof Error ? err.message : String(err)}`,
        line: null,
        param: null,
      };
      await fail(store, batchId, reason, now());
      log.warn({ err, code: reason.code }, 'planning failed; batch failed');
      return { outcome: 'failed', error: reason };
    }
    throw err;
  } finally {
    stopWatch();
    deps.signal?.removeEventListener('abort', onOuterAbort);
  }

  const plan: PlanSummary = {
    planUri: files.plan,
    objects: result.objects.length,
    inputBytes: result.inputBytes,
    sha256: result.sha256,
    invalidLines: result.invalidLines,
    duplicateLines: result.duplicateLines,
    plannedAt: now(),
  };
  if (result.totalLines === 0) {
    const error: BatchError = {
      code: 'empty_input',
      message: `input ${spec.input} holds no requests (${result.objects.length} object(s), every line blank)`,
      line: null,
      param: 'input_file',
    };
    await fail(store, batchId, error, now(), { plan: JSON.stringify(plan) });
    return { outcome: 'failed', error };
  }
  const { moved, status } = await store.transition(batchId, ['validating'], 'in_progress', {
    in_progress_at: now(),
    planned: '1',
    total: result.totalLines,
    chunks: result.chunks,
    cursor: 0,
    plan_byte: 0,
    admitted: 0,
    plan: JSON.stringify(plan),
  });
  if (!moved) return { outcome: 'left_validating', status };
  log.info({ total: result.totalLines, chunks: result.chunks, created: result.created }, 'batch planned');
  return { outcome: 'planned', total: result.totalLines, chunks: result.chunks };
}
