/**
 * The plan job: a batch in `validating` has its input streamed once into a
 * plan (./plan-to-storage.ts). The plan is published in pieces as it is cut:
 * the first piece moves the batch to `in_progress`, so the scheduler admits
 * chunks while the rest is planned, and the end of planning sets the total.
 * A failure ends the batch `failed` with a reason naming the URI and the
 * cause: input problems at once, a retryable failure on the job's last
 * attempt. It never leaves a batch unplanned without one.
 *
 * - Stopped before any piece was published (cancel or expiry while
 *   `validating`): planning is aborted; nothing ran, nothing is marked.
 * - Stopped after (cancelling, or finalizing for expiry): planning runs on to
 *   the end, for finalisation needs the whole plan to account for every line
 *   (the scheduler holds the batch until `planned`).
 * - Failed after pieces were published: the batch ends `failed` all the same
 *   (finalisation needs the whole plan), the message says how many chunks had
 *   been admitted; chunk jobs still queued are dropped by workers (the batch
 *   is no longer runnable), and the parts of the chunks that ran stay under
 *   `parts/`, as for any failed batch.
 *
 * Every move is a compare-and-set (BatchStore.publishPlan, failPlanning), so a
 * late plan never moves a batch someone else ended.
 */
import {
  batchFiles,
  isTerminal,
  type BatchError,
  type BatchSpec,
  type BatchState,
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
  /**
   * Told after each plan piece is published (chunks readable so far), e.g. to report it as the
   * job's progress, which a scheduler can take as its cue to admit at once.
   */
  onPublished?: (published: number) => void;
}

export type PlanJobOutcome =
  | { outcome: 'planned'; total: number; chunks: number }
  | { outcome: 'failed'; error: BatchError }
  | { outcome: 'left_validating'; status: BatchStatus | undefined };

/**
 * Pure: the batch error for a planning failure that retrying cannot fix, or
 * undefined when it may (a retryable storage error, or anything unknown).
 */
export function planFailure(
  err: unknown,
  spec: Pick<BatchSpec, 'input' | 'outputPrefix'>,
  planUri: string,
): BatchError | undefined {
  if (!isStorageError(err) || err.retryable || err.code === 'cancelled') return undefined;
  // Planning writes the plan and its pieces under the output prefix: a failure there is the output's.
  const piece = `${batchFiles(spec.outputPrefix).planPieces}plan-`;
  const output = err.uri === planUri || (err.uri?.startsWith(piece) ?? false);
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
  const { moved } = await store.failPlanning(batchId, {
    ...fields,
    failed_at: now,
    errors: JSON.stringify([error]),
  });
  return moved;
}

/** Whether planning goes on: the batch is validating, or a piece led it on and it is not final. */
const stillPlanned = (state: BatchState | undefined): boolean =>
  state !== undefined &&
  !state.planned &&
  (state.status === 'validating' || (state.counters.plan_chunks > 0 && !isTerminal(state.status)));

/** Aborts `controller` once the batch no longer wants planning (stillPlanned); returns a stop function. */
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
      const state = await store.get(batchId);
      if (!stillPlanned(state)) {
        onLeft(state?.status);
        controller.abort(new Error(`batch ${batchId} is ${state?.status ?? 'gone'}`));
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
  if (!stillPlanned(state)) return { outcome: 'left_validating', status: state?.status };
  const { spec } = state!;
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
      piecesPrefix: files.planPieces,
      onPublished: async (published) => {
        const r = await store.publishPlan(batchId, published, now());
        if (r.result === 'left') {
          left = { status: r.status };
          controller.abort(new Error(`batch ${batchId} is ${r.status ?? 'gone'}`));
          throw controller.signal.reason;
        }
        if (r.status === 'validating') log.info({ published }, 'first plan piece published; batch in_progress');
        deps.onPublished?.(published);
      },
    });
  } catch (err) {
    if (left) {
      log.info({ status: left.status }, 'the batch left validating while it was planned; planning stopped');
      return { outcome: 'left_validating', status: left.status };
    }
    if (deps.signal?.aborted) throw err; // draining: the job runs again elsewhere
    const error = planFailure(err, spec, files.plan);
    if (error || opts.lastAttempt) {
      let reason = error ?? {
        code: 'planning_failed',
        message: `planning ${spec.input} failed after every attempt: ${err instanceof Error ? err.message : String(err)}`,
        line: null,
        param: null,
      };
      const admitted = (await store.get(batchId))?.counters.admitted ?? 0;
      if (admitted > 0) {
        reason = {
          ...reason,
          message: `${reason.message}; planning stopped after ${admitted} chunk(s) had been admitted (their parts are kept under ${files.parts}, no output file is written)`,
        };
      }
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
    pieces: true,
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
  const end = await store.publishPlan(batchId, result.chunks, now(), {
    planned: '1',
    total: result.totalLines,
    chunks: result.chunks,
    plan: JSON.stringify(plan),
  });
  if (end.result === 'left') return { outcome: 'left_validating', status: end.status };
  log.info({ total: result.totalLines, chunks: result.chunks, created: result.created }, 'batch planned');
  return { outcome: 'planned', total: result.totalLines, chunks: result.chunks };
}
