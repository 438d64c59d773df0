/**
 * Keeps this worker's own pod annotated with `controller.kubernetes.io/pod-deletion-cost`, so that when
 * the autoscaler lowers its Deployment's replicas the ReplicaSet controller removes the idlest pods
 * first (it takes unscheduled, pending and unready pods first, then the lowest cost). The worker is the
 * one writer of its annotation, because only it knows its busy slots the moment they change.
 *
 * Cost: one per busy slot, TRAINING_RANK_COST per training rank (stopping a rank stalls its whole gang,
 * so replicas running gangs go last), DRAINING_COST when draining (its pod is normally terminating and
 * out of the controller's choice already; a worker drained any other way should go before idle ones).
 *
 * Only in Kubernetes: POD_NAME and POD_NAMESPACE come from the downward API (k8s/oke/gpu-worker.yaml),
 * auth is in-cluster, RBAC is patch on pods (k8s/oke/gpu-worker-rbac.yaml). A patch is sent only when
 * the cost differs from the last one applied, at most one per `minIntervalMs` and one at a time: changes
 * inside the interval are coalesced into one trailing patch with the latest value. A failed patch is
 * logged and retried after a backoff that doubles up to MAX_BACKOFF_MS; nothing throws into the worker.
 */
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  Observable,
  PatchStrategy,
  setHeaderOptions,
  type ObservableMiddleware,
} from '@kubernetes/client-node';
import type { Logger } from '../common/logger.ts';
import type { Lane } from './realtime-lane.ts';

export const DELETION_COST_ANNOTATION = 'controller.kubernetes.io/pod-deletion-cost';
export const TRAINING_RANK_COST = 1000;
export const DRAINING_COST = -1;
export const MAX_BACKOFF_MS = 60_000;
const INT32_MAX = 2 ** 31 - 1;

export interface LaneLoad {
  name: Lane['name'];
  inFlight: number;
}

export function deletionCost(lanes: readonly LaneLoad[], draining: boolean): number {
  if (draining) return DRAINING_COST;
  const cost = lanes.reduce((sum, l) => sum + l.inFlight * (l.name === 'training' ? TRAINING_RANK_COST : 1), 0);
  return Math.min(cost, INT32_MAX);
}

export interface PatchState {
  /** The cost last applied to the pod; undefined until one is (a restarted container's pod keeps the old one). */
  sent: number | undefined;
  inFlight: boolean;
  /** No patch before this time (rate limit after a success, backoff after a failure). */
  notBefore: number;
}
export type PatchPlan = { kind: 'none' } | { kind: 'now' } | { kind: 'later'; inMs: number };

/** What to do about `desired` now. In flight: nothing; the end of that patch plans again. */
export function planPatch(desired: number, s: PatchState, now: number): PatchPlan {
  if (s.inFlight || desired === s.sent) return { kind: 'none' };
  return now >= s.notBefore ? { kind: 'now' } : { kind: 'later', inMs: s.notBefore - now };
}

export const backoffMs = (minIntervalMs: number, failures: number): number =>
  Math.min(minIntervalMs * 2 ** failures, Math.max(MAX_BACKOFF_MS, minIntervalMs));

export interface Clock {
  now(): number;
  /** Runs `fn` after `ms` (unref'd: it never keeps the process alive); returns its cancel. */
  setTimeout(fn: () => void, ms: number): () => void;
}
const systemClock: Clock = {
  now: Date.now,
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

export interface PodDeletionCostDeps {
  lanes: () => readonly Pick<Lane, 'name' | 'inFlight'>[];
  draining: () => boolean;
  logger: Logger;
  /** How often the lanes are read (the heartbeat's cadence); 0: only on update(). */
  everyMs: number;
  minIntervalMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Instead of in-cluster auth (tests). */
  kubeConfig?: KubeConfig;
  clock?: Clock;
  requestTimeoutMs?: number;
}

export interface PodDeletionCostHandle {
  /** Reads the lanes now and patches if the cost changed (rate-limited). Never throws. */
  update(): void;
  /** Stops; waits for a patch in flight (bounded by the request timeout). */
  stop(): Promise<void>;
}

const inactive: PodDeletionCostHandle = { update() {}, stop: async () => {} };

export function startPodDeletionCost(deps: PodDeletionCostDeps): PodDeletionCostHandle {
  const env = deps.env ?? process.env;
  const { POD_NAME: name, POD_NAMESPACE: namespace } = env;
  const log = deps.logger.child({ component: 'pod-deletion-cost', pod: name });
  if (!name || !namespace) return inactive;
  if (!deps.kubeConfig && !env.KUBERNETES_SERVICE_HOST) {
    log.warn('POD_NAME is set but KUBERNETES_SERVICE_HOST is not: pod-deletion-cost stays unset');
    return inactive;
  }
  const kc = deps.kubeConfig ?? new KubeConfig();
  if (!deps.kubeConfig) kc.loadFromCluster();
  const core = kc.makeApiClient(CoreV1Api);
  const clock = deps.clock ?? systemClock;
  const minIntervalMs = deps.minIntervalMs ?? 5000;
  const requestTimeoutMs = deps.requestTimeoutMs ?? 10_000;
  // A merge patch (the client's default is JSON patch), abandoned after requestTimeoutMs.
  const pass = <T>(ctx: T): Observable<T> => new Observable(Promise.resolve(ctx));
  const timeout: ObservableMiddleware = {
    pre: (ctx) => (ctx.setSignal(AbortSignal.timeout(requestTimeoutMs)), pass(ctx)),
    post: pass,
  };
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch, { middleware: [timeout] });

  const state: PatchState = { sent: undefined, inFlight: false, notBefore: 0 };
  let failures = 0;
  let stopped = false;
  let inFlight: Promise<void> | undefined;
  let cancelTrailing: (() => void) | undefined;
  let cancelTick: (() => void) | undefined;

  async function send(cost: number): Promise<void> {
    const body = { metadata: { annotations: { [DELETION_COST_ANNOTATION]: String(cost) } } };
    try {
      await core.patchNamespacedPod({ name: name!, namespace: namespace!, body }, mergePatch);
      state.sent = cost;
      failures = 0;
      state.notBefore = clock.now() + minIntervalMs;
    } catch (err) {
      failures++;
      const retryInMs = backoffMs(minIntervalMs, failures);
      state.notBefore = clock.now() + retryInMs;
      const status = err instanceof ApiException ? err.code : undefined;
      const why = status === undefined ? (err as Error).message : `HTTP ${status}`;
      const hint = status === 403 ? ' (RBAC: patch on pods, k8s/oke/gpu-worker-rbac.yaml)' : '';
      log.warn({ cost, status, retryInMs }, `pod-deletion-cost not updated: ${why}${hint}`);
    }
  }

  function update(): void {
    if (stopped) return;
    let desired: number;
    try {
      desired = deletionCost(
        deps.lanes().map((l) => ({ name: l.name, inFlight: l.inFlight() })),
        deps.draining(),
      );
    } catch (err) {
      log.warn({ err }, 'pod-deletion-cost: lanes not read');
      return;
    }
    const plan = planPatch(desired, { ...state, inFlight: inFlight !== undefined }, clock.now());
    if (plan.kind === 'later' && !cancelTrailing) {
      cancelTrailing = clock.setTimeout(() => {
        cancelTrailing = undefined;
        update();
      }, plan.inMs);
    } else if (plan.kind === 'now') {
      cancelTrailing?.();
      cancelTrailing = undefined;
      inFlight = send(desired).finally(() => {
        inFlight = undefined;
        update();
      });
    }
  }

  const tick = (): void => {
    cancelTick = clock.setTimeout(() => {
      update();
      if (!stopped) tick();
    }, deps.everyMs);
  };
  if (deps.everyMs > 0) tick();
  update();

  return {
    update,
    async stop() {
      stopped = true;
      cancelTick?.();
      cancelTrailing?.();
      await inFlight;
    },
  };
}
