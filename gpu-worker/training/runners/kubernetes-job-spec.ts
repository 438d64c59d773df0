/**
 * The `kubernetes` runner's pure half: the batch/v1 Job a rank becomes, and what a Job and its pod say
 * about how the rank is doing. No I/O (kubernetes-job.ts does that).
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { KubernetesRunnerConfig } from '../../../common/config.ts';
import type { RankRunSpec } from './runner.ts';

export const CONTAINER = 'rank';
/** Set on every pod of a Job by the Job controller (older clusters: `job-name` only). */
export const JOB_NAME_LABEL = 'job-name';
export const LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  job: 'interfleet/training-job',
  round: 'interfleet/round',
  rank: 'interfleet/rank',
  restart: 'interfleet/restart',
} as const;

/** A DNS-1123 name (≤ 63: the pods' job-name label carries it) unique per run: a retry never meets the last one. */
export function jobName(rank: RankRunSpec['rank'], suffix: string): string {
  const id = rank.jobId.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return `${id}-r${rank.round}-k${rank.rank}-${suffix}`.slice(0, 63).replace(/-+$/, '');
}

export function buildJob(cfg: KubernetesRunnerConfig, spec: RankRunSpec, name: string, now: number): V1Job {
  const labels = {
    [LABELS.managedBy]: 'interfleet',
    [LABELS.job]: spec.rank.jobId,
    [LABELS.round]: String(spec.rank.round),
    [LABELS.rank]: String(spec.rank.rank),
    [LABELS.restart]: String(spec.rank.restart),
  };
  const requests: Record<string, string> = {};
  if (cfg.cpu) requests.cpu = cfg.cpu;
  if (cfg.memory) requests.memory = cfg.memory;
  const gpus: Record<string, string> = cfg.gpus > 0 ? { 'nvidia.com/gpu': String(cfg.gpus) } : {};
  // A deadline already passed still gets 1 s: the API refuses 0, and the Job then fails DeadlineExceeded.
  const deadline = spec.deadlineAt === undefined ? undefined : Math.max(1, Math.ceil((spec.deadlineAt - now) / 1000));
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: cfg.namespace, labels },
    spec: {
      // One try: BullMQ's attempts (and the gang's restarts) are the retries, counted in one place.
      backoffLimit: 0,
      ttlSecondsAfterFinished: cfg.ttlSecondsAfterFinished,
      ...(deadline !== undefined && { activeDeadlineSeconds: deadline }),
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: Math.max(1, Math.ceil(spec.killAfterMs / 1000)),
          ...(cfg.serviceAccountName && { serviceAccountName: cfg.serviceAccountName }),
          // No API token (unless configured) and no service links (a variable per Service in the
          // namespace, REDIS_* among them): the pod's environment is the env below and the image's.
          automountServiceAccountToken: cfg.automountServiceAccountToken,
          enableServiceLinks: false,
          nodeSelector: cfg.nodeSelector,
          tolerations: cfg.tolerations,
          containers: [
            {
              name: CONTAINER,
              image: cfg.image,
              ...(cfg.imagePullPolicy && { imagePullPolicy: cfg.imagePullPolicy }),
              // command replaces the image's ENTRYPOINT: argv as given, no shell, as locally.
              command: [spec.command],
              args: [...spec.args],
              env: Object.entries(spec.env).map(([n, value]) => ({ name: n, value })),
              resources: { requests: { ...requests, ...gpus }, limits: { ...gpus } },
            },
          ],
        },
      },
    },
  };
}

/** Waiting reasons after which the container will never start by itself: like a local spawn error. */
const CANNOT_START = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
]);

export type JobState =
  | { state: 'pending'; why: string }
  | { state: 'running' }
  | { state: 'cannot_start'; why: string }
  | { state: 'ended'; exitCode: number | null; reason?: string };

/** Where a rank's Job stands, from the Job and its pod (undefined while the controller has made none). */
export function jobState(job: V1Job, pod: V1Pod | undefined): JobState {
  const container = pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER);
  const terminated = container?.state?.terminated;
  const conditions = job.status?.conditions ?? [];
  const done = (type: string) => conditions.find((c) => c.type === type && c.status === 'True');
  if (done('Complete') || (job.status?.succeeded ?? 0) > 0) return { state: 'ended', exitCode: 0 };
  const failed = done('Failed');
  if (failed || (job.status?.failed ?? 0) > 0) {
    // The container's own exit code when it ran; else the Job's reason (DeadlineExceeded, …).
    if (terminated && terminated.exitCode !== 0) return { state: 'ended', exitCode: terminated.exitCode };
    const why = [failed?.reason, failed?.message].filter(Boolean).join(': ') || 'the Job failed';
    return { state: 'ended', exitCode: null, reason: `Job failed: ${why}` };
  }
  if (terminated) return { state: 'ended', exitCode: terminated.exitCode };
  const waiting = container?.state?.waiting;
  if (waiting?.reason && CANNOT_START.has(waiting.reason)) {
    return { state: 'cannot_start', why: `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}` };
  }
  if (container?.state?.running) return { state: 'running' };
  const unscheduled = pod?.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  const why = !pod
    ? 'no pod yet'
    : unscheduled
      ? `unschedulable: ${unscheduled.message ?? unscheduled.reason ?? ''}`
      : (waiting?.reason ?? pod.status?.phase ?? 'Pending');
  return { state: 'pending', why };
}
