/**
 * The `kubernetes` actuator: a pool is one gpu-worker Deployment on OKE, and its replica count is the
 * Deployment's scale subresource (`…/deployments/{name}/scale`), never the Deployment object. The
 * subresource is the contract every autoscaler uses (HPA, KEDA, `kubectl scale`), so ownership of
 * spec.replicas can pass between them; a merge patch of spec.replicas alone never touches the pod
 * template, so a rollout in progress carries on (the Deployment controller spreads the new count over
 * the old and new ReplicaSets) and a `kubectl apply` of the manifests, which leave replicas out, does not
 * reset it; and RBAC can grant get and patch on `deployments/scale` without any write to Deployments.
 * A merge patch carries no resourceVersion, so it never conflicts. The count compared is the scale's
 * spec.replicas, never the pods that exist: a rollout's surge or unready pods are no reason to patch.
 *
 * Which replicas go on scale-in is the ReplicaSet controller's choice: after unscheduled, pending and
 * unready pods, the lowest `controller.kubernetes.io/pod-deletion-cost` first. Each worker keeps its own
 * pod's cost current from its busy slots (gpu-worker/pod-deletion-cost.ts). This actuator does not write
 * the annotation from `busy`: the heartbeats behind `busy` are no fresher than the workers' own
 * annotations (both lag by seconds), two writers of one annotation would overwrite a newer value with an
 * older one, and the scheduler's credential (held on GKE) would need patch on every pod of the namespace.
 * Before a scale-in it only reads the pods (list, already granted) and warns about pods with no cost,
 * among which the controller picks without regard to work.
 */
import {
  AppsV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import type { AutoscalerConfig } from '../../../common/autoscale/policy.ts';
import { loadKubeConfig, readKubeFailure, withTimeout } from '../../../common/kubernetes/client.ts';
import type { Logger } from '../../../common/logger.ts';
import { ActuatorError, type Actuator } from './actuator.ts';

const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';
const RBAC_HINT = 'get and patch on deployments/scale, get on deployments, list on pods';

export interface KubernetesActuatorOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Use this config instead of choosing one (tests). */
  kubeConfig?: KubeConfig;
  /** Prepended to /var/run/secrets/kubernetes.io/serviceaccount/* for in-cluster auth (tests). */
  inClusterPathPrefix?: string;
  /** Each API call is abandoned after this long (the loop holds and retries). */
  requestTimeoutMs?: number;
}

type KubernetesConfig = AutoscalerConfig['kubernetes'];
interface Call {
  verb: 'get' | 'patch' | 'list';
  resource: 'deployments' | 'deployments/scale' | 'pods';
  namespace: string;
  name?: string;
}

/** loadKubeConfig's failure as the loop's: no retry helps. */
export function loadActuatorKubeConfig(
  cfg: KubernetesConfig,
  env: NodeJS.ProcessEnv,
  inClusterPathPrefix = '',
): KubeConfig {
  try {
    return loadKubeConfig(cfg, env, inClusterPathPrefix);
  } catch (err) {
    throw new ActuatorError((err as Error).message, false, { cause: err });
  }
}

export function toActuatorError(err: unknown, call: Call): ActuatorError {
  const target = `${call.resource} ${call.namespace}/${call.name ?? ''}`.replace(/\/$/, '');
  const { status, detail, retryable } = readKubeFailure(err);
  if (status === undefined) {
    return new ActuatorError(`${call.verb} ${target}: Kubernetes API not reached${detail}`, true, { cause: err });
  }
  const fail = (message: string, retryable: boolean): ActuatorError =>
    new ActuatorError(`${message} (HTTP ${status})${detail}`, retryable, { cause: err });
  if (status === 404 && call.resource !== 'pods') {
    return fail(`Deployment ${call.name ?? '?'} not found in namespace ${call.namespace}`, false);
  }
  if (status === 403) {
    return fail(
      `forbidden to ${call.verb} ${target}: the scheduler's Role needs ${RBAC_HINT} in ${call.namespace} (k8s/oke/scheduler-access.yaml)`,
      false,
    );
  }
  return fail(`${call.verb} ${target} refused`, retryable);
}

/** Pods by pod-deletion-cost, lowest first (absent or invalid: 0, as the controller reads it). */
export function scaleInCandidates(pods: readonly V1Pod[]): { pod: string; cost: number | undefined }[] {
  const parse = (v: string | undefined): number | undefined =>
    v && /^(0|-?[1-9]\d*)$/.test(v) ? Number(v) : undefined;
  return pods
    .map((p) => ({ pod: p.metadata?.name ?? '?', cost: parse(p.metadata?.annotations?.[DELETION_COST]) }))
    .sort((a, b) => (a.cost ?? 0) - (b.cost ?? 0));
}

export function createKubernetesActuator(cfg: KubernetesConfig, opts: KubernetesActuatorOptions): Actuator {
  const kc = opts.kubeConfig ?? loadActuatorKubeConfig(cfg, opts.env ?? process.env, opts.inClusterPathPrefix);
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const timeout = withTimeout(opts.requestTimeoutMs ?? 10_000);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch, timeout);
  const { namespace } = cfg;
  const logger = opts.logger.child({ actuator: 'kubernetes', namespace });
  const deploymentOf = (pool: string): string => cfg.deployment.replaceAll('{pool}', pool);

  const call = async <T>(c: Omit<Call, 'namespace'>, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toActuatorError(err, { ...c, namespace });
    }
  };
  const readScale = (name: string) =>
    call({ verb: 'get', resource: 'deployments/scale', name }, () =>
      apps.readNamespacedDeploymentScale({ name, namespace }, timeout),
    );

  /** Best effort: a scale-in goes ahead whatever this finds. */
  async function auditScaleIn(name: string, selector: string | undefined, removing: number): Promise<void> {
    if (!selector) return;
    try {
      const list = await call({ verb: 'list', resource: 'pods' }, () =>
        core.listNamespacedPod({ namespace, labelSelector: selector }, timeout),
      );
      const pods = scaleInCandidates(list.items);
      const uncosted = pods.filter((p) => p.cost === undefined).map((p) => p.pod);
      if (uncosted.length > 0) {
        logger.warn(
          { deployment: name, pods: uncosted },
          'scale-in: pods without a pod-deletion-cost; one of them may be busy (gpu-worker RBAC: k8s/oke/gpu-worker-rbac.yaml)',
        );
      }
      logger.info({ deployment: name, idlest: pods.slice(0, removing) }, 'scale-in: idlest pods by deletion cost');
    } catch (err) {
      logger.warn({ deployment: name, err }, 'scale-in: pods not read; scaling in anyway');
    }
  }

  return {
    kind: 'kubernetes',
    async observe(pool) {
      const name = deploymentOf(pool);
      // Both settle before either error is thrown: no request outlives the call.
      const [scale, deployment] = await Promise.allSettled([
        readScale(name),
        call({ verb: 'get', resource: 'deployments', name }, () =>
          apps.readNamespacedDeployment({ name, namespace }, timeout),
        ),
      ]);
      if (scale.status === 'rejected') throw scale.reason;
      if (deployment.status === 'rejected') throw deployment.reason;
      // Zero counts are omitted by the API.
      return { desired: scale.value.spec?.replicas ?? 0, ready: deployment.value.status?.readyReplicas ?? 0 };
    },
    async scale(pool, replicas, _busy) {
      const name = deploymentOf(pool);
      if (!Number.isInteger(replicas) || replicas < 0) {
        throw new ActuatorError(`cannot scale ${namespace}/${name} to ${replicas} replicas`, false);
      }
      const scale = await readScale(name);
      const current = scale.spec?.replicas ?? 0;
      if (current === replicas) return;
      if (replicas < current) await auditScaleIn(name, scale.status?.selector, current - replicas);
      await call({ verb: 'patch', resource: 'deployments/scale', name }, () =>
        apps.patchNamespacedDeploymentScale({ name, namespace, body: { spec: { replicas } } }, mergePatch),
      );
      logger.info({ deployment: name, from: current, to: replicas }, 'scaled');
    },
    async close() {},
  };
}
