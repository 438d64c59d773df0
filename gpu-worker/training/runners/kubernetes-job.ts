/**
 * The `kubernetes` runner: a rank as a batch/v1 Job on OKE (kubernetes-job-spec.ts builds it), followed by
 * bounded polling of the Job and its pod (a read of each per poll; no watch to resume), its pod's log
 * streamed (follow) for metric lines, the outcome mapped to an exit code or a reason. A stop (the gang
 * ended, the worker drains) deletes the Job, propagationPolicy Background: the pod gets SIGTERM and its
 * terminationGracePeriodSeconds (killAfterMs). The pod cannot see the worker's directory: the program
 * pulls its data and pushes its output itself, from the URIs in its environment (env below).
 */
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BatchV1Api, CoreV1Api, Log, type KubeConfig, type V1Job, type V1PodList } from '@kubernetes/client-node';
import type { KubernetesRunnerConfig } from '../../../common/config.ts';
import { loadKubeConfig, readKubeFailure, withTimeout } from '../../../common/kubernetes/client.ts';
import type { Logger } from '../../../common/logger.ts';
import { LineSplitter, parseMetricLine, rankEnv, stderrTailBytes, type RunResult } from '../run-command.ts';
import { buildJob, CONTAINER, JOB_NAME_LABEL, jobName, jobState } from './kubernetes-job-spec.ts';
import type { RankRunner, RankRunSpec } from './runner.ts';

const RBAC_HINT = 'create, get and delete on jobs, list on pods and get on pods/log';

export type KubeRunnerErrorCode =
  'unauthorized' | 'forbidden' | 'not_found' | 'invalid' | 'conflict' | 'unavailable' | 'unreachable' | 'cannot_start';

/** A rank's Job could not be made or followed; `retryable`: whether running the rank again may help. */
export class KubeRunnerError extends Error {
  constructor(
    readonly code: KubeRunnerErrorCode,
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'KubeRunnerError';
  }
}

const codeOf = (status: number | undefined): KubeRunnerErrorCode =>
  status === undefined
    ? 'unreachable'
    : status === 401
      ? 'unauthorized'
      : status === 403
        ? 'forbidden'
        : status === 404
          ? 'not_found'
          : status === 409
            ? 'conflict'
            : status === 400 || status === 422
              ? 'invalid'
              : 'unavailable';

export function toKubeRunnerError(err: unknown, verb: string, target: string, namespace: string): KubeRunnerError {
  const { status, detail, retryable } = readKubeFailure(err);
  const code = codeOf(status);
  const http = status === undefined ? ': Kubernetes API not reached' : ` (HTTP ${status})`;
  const hint = code === 'forbidden' ? `; the gpu-worker's Role needs ${RBAC_HINT} in ${namespace}` : '';
  return new KubeRunnerError(code, `${verb} ${target}${http}${detail}${hint}`, retryable, status, { cause: err });
}

export interface KubernetesRunnerOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Use this config instead of choosing one (tests). */
  kubeConfig?: KubeConfig;
  inClusterPathPrefix?: string;
  /** The Job name's unique suffix (tests). */
  suffix?: () => string;
  now?: () => number;
}

const failed = (reason: string, spawnError: Error | null = null): RunResult => ({
  exitCode: null,
  signal: null,
  spawnError,
  stderrTail: '',
  reason,
});

export function createKubernetesRunner(cfg: KubernetesRunnerConfig, opts: KubernetesRunnerOptions): RankRunner {
  const kc = opts.kubeConfig ?? loadKubeConfig(cfg, opts.env ?? process.env, opts.inClusterPathPrefix);
  const batch = kc.makeApiClient(BatchV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const podLogs = new Log(kc);
  const timeout = withTimeout(cfg.requestTimeoutMs);
  const { namespace } = cfg;
  const now = opts.now ?? Date.now;
  const suffix = opts.suffix ?? (() => randomBytes(3).toString('hex'));
  const log = opts.logger.child({ runner: 'kubernetes', namespace });

  const call = async <T>(verb: string, target: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toKubeRunnerError(err, verb, target, namespace);
    }
  };

  /** Best effort: the Job's TTL removes it in the end anyway. */
  const remove = async (name: string): Promise<void> => {
    try {
      await call('delete', `jobs ${namespace}/${name}`, () =>
        batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }, timeout),
      );
      log.info({ job: name }, 'rank Job deleted');
    } catch (err) {
      if ((err as KubeRunnerError).code !== 'not_found') log.warn({ err, job: name }, 'rank Job not deleted');
    }
  };

  /** Follows a pod's log into `lines`; `done` settles when it ends (or fails: the rank runs on without its metrics). */
  const follow = (pod: string, onText: (text: string) => void) => {
    const sink = new PassThrough().setEncoding('utf8');
    let controller: AbortController | undefined;
    const done = new Promise<void>((resolve) => {
      sink.on('data', (text: string) => onText(text));
      sink.on('end', resolve).on('close', resolve);
      // The response body is piped in: an error on it (an aborted read) must not go unhandled.
      sink.on('pipe', (body: NodeJS.ReadableStream) => void body.on('error', () => resolve()));
      podLogs
        .log(namespace, pod, CONTAINER, sink, { follow: true })
        .then((c) => (controller = c))
        .catch((err: unknown) => {
          log.warn(
            { err: toKubeRunnerError(err, 'get', `pods/log ${namespace}/${pod}`, namespace), pod },
            'log not followed',
          );
          resolve();
        });
    });
    return {
      done,
      stop: () => {
        controller?.abort();
        sink.end();
      },
    };
  };

  async function run(spec: RankRunSpec): Promise<RunResult> {
    const name = jobName(spec.rank, suffix());
    const jobLog = log.child({ job: name });
    let tail = '';
    const lines = new LineSplitter((line) => {
      const metric = parseMetricLine(line);
      if (metric) spec.onMetric(metric, line);
      else tail = `${tail}${line}\n`.slice(-stderrTailBytes);
    });
    try {
      await call('create', `jobs ${namespace}/${name}`, () =>
        batch.createNamespacedJob({ namespace, body: buildJob(cfg, spec, name, now()) }, timeout),
      );
    } catch (err) {
      const e = err as KubeRunnerError;
      // Refused for good (forbidden, no such namespace, an invalid spec): as a program that cannot start.
      return e.retryable ? failed(e.message) : failed(e.message, e);
    }
    jobLog.info('rank Job created');
    spec.onStart?.(undefined);
    const startedAt = now();
    let logs: ReturnType<typeof follow> | undefined;
    let failures = 0;
    const stopLogs = () => logs?.stop();
    const end = (result: RunResult): RunResult => {
      lines.end();
      return { ...result, stderrTail: tail, tailOf: 'log' };
    };
    try {
      for (;;) {
        if (spec.signal.aborted) {
          await remove(name);
          return end({ exitCode: null, signal: 'SIGTERM', spawnError: null, stderrTail: '' });
        }
        let job: V1Job;
        let pods: V1PodList;
        try {
          job = await call('get', `jobs ${namespace}/${name}`, () =>
            batch.readNamespacedJob({ name, namespace }, timeout),
          );
          pods = await call('list', `pods ${namespace}`, () =>
            core.listNamespacedPod({ namespace, labelSelector: `${JOB_NAME_LABEL}=${name}` }, timeout),
          );
          failures = 0;
        } catch (err) {
          const e = err as KubeRunnerError;
          if (e.retryable && ++failures < cfg.maxPollFailures) {
            jobLog.warn({ err: e, failures }, 'rank Job not read; trying again');
          } else {
            await remove(name);
            return end(failed(`lost track of Job ${name}: ${e.message}`));
          }
          await sleep(cfg.pollIntervalMs, undefined, { signal: spec.signal }).catch(() => undefined);
          continue;
        }
        const pod = pods.items[0];
        const state = jobState(job, pod);
        const podName = pod?.metadata?.name;
        if (!logs && podName && (state.state === 'running' || state.state === 'ended')) {
          logs = follow(podName, (text) => lines.push(text));
        }
        if (state.state === 'ended') {
          // The log ends with the container; bounded all the same.
          if (logs) await Promise.race([logs.done, sleep(cfg.requestTimeoutMs)]);
          jobLog.info({ exitCode: state.exitCode, reason: state.reason }, 'rank Job ended');
          return end({
            exitCode: state.exitCode,
            signal: null,
            spawnError: null,
            stderrTail: '',
            reason: state.reason,
          });
        }
        if (state.state === 'cannot_start') {
          await remove(name);
          const why = `pod of Job ${name} cannot start: ${state.why}`;
          return end(failed(why, new KubeRunnerError('cannot_start', why, false)));
        }
        if (state.state === 'pending' && now() - startedAt > cfg.startTimeoutMs) {
          await remove(name);
          return end(failed(`pod of Job ${name} not started within ${cfg.startTimeoutMs} ms (${state.why})`));
        }
        await sleep(cfg.pollIntervalMs, undefined, { signal: spec.signal }).catch(() => undefined);
      }
    } finally {
      stopLogs();
    }
  }

  return {
    kind: 'kubernetes',
    filesOnWorker: false,
    // Gang mode would need rank 0's pod address before its peers start: not yet.
    modes: ['rounds'],
    /**
     * None of the worker's variables and no worker directories: the image has its own PATH and HOME.
     * The pool's declared variables pass (the operator set them for the ranks).
     */
    env: (rank, input) => ({
      ...rankEnv(rank, { declared: input.declared }),
      INTERFLEET_DATA_URIS: JSON.stringify(rank.data.uris),
      INTERFLEET_SHARD: rank.data.shard,
    }),
    run,
    close: async () => {},
  };
}
