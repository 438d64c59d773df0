/**
 * What every caller of the Kubernetes API here shares (the scheduler's actuator, the training lane's
 * Kubernetes runner): choosing a KubeConfig the way kubectl would, a timeout on every request, and
 * reading an ApiException into a status, the API's own words and whether a retry can help.
 */
import { delimiter } from 'node:path';
import {
  ApiException,
  KubeConfig,
  Observable,
  type ConfigurationOptions,
  type ObservableMiddleware,
} from '@kubernetes/client-node';

/** Where to find the cluster: both absent means kubectl's order (below). */
export interface KubeConfigSource {
  kubeconfig?: string | undefined;
  context?: string | undefined;
}

/** The config could not be loaded: no retry helps. */
export class KubeConfigError extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'KubeConfigError';
  }
}

/**
 * cfg.kubeconfig; else $KUBECONFIG (the scheduler's pod on GKE sets it: in-cluster there would be GKE's own
 * API server); else in-cluster when KUBERNETES_SERVICE_HOST is set; else ~/.kube/config. Then cfg.context.
 */
export function loadKubeConfig(cfg: KubeConfigSource, env: NodeJS.ProcessEnv, inClusterPathPrefix = ''): KubeConfig {
  const kc = new KubeConfig();
  const files = cfg.kubeconfig ? [cfg.kubeconfig] : (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  const source = files.join(delimiter) || (env.KUBERNETES_SERVICE_HOST ? 'in-cluster' : 'the default kubeconfig');
  try {
    if (files.length > 0) {
      kc.loadFromFile(files[0]!);
      for (const file of files.slice(1)) {
        const more = new KubeConfig();
        more.loadFromFile(file);
        kc.mergeConfig(more, Boolean(kc.getCurrentContext())); // the first current-context wins
      }
    } else if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster(inClusterPathPrefix);
    else kc.loadFromDefault();
  } catch (err) {
    throw new KubeConfigError(`cannot load Kubernetes config ${source}: ${(err as Error).message}`, { cause: err });
  }
  if (cfg.context) {
    if (!kc.getContextObject(cfg.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new KubeConfigError(`context "${cfg.context}" is not in ${source} (it has: ${known.join(', ')})`);
    }
    kc.setCurrentContext(cfg.context);
  }
  if (!kc.getCurrentCluster()) throw new KubeConfigError(`${source} names no current cluster`);
  return kc;
}

/** The API's own words, from a v1 Status body (': …', or '' when it has none). */
export function statusMessage(body: unknown): string {
  try {
    const parsed: unknown = typeof body === 'string' ? JSON.parse(body) : body;
    const message = (parsed as { message?: unknown } | undefined)?.message;
    return typeof message === 'string' ? `: ${message}` : '';
  } catch {
    return '';
  }
}

/** A failed call, read: `status` undefined when the API was not reached at all. */
export interface KubeFailure {
  status: number | undefined;
  /** ': ' and the API's message, or the transport's error; '' when there is none. */
  detail: string;
  retryable: boolean;
}

export function readKubeFailure(err: unknown): KubeFailure {
  if (!(err instanceof ApiException)) {
    return { status: undefined, detail: `: ${err instanceof Error ? err.message : String(err)}`, retryable: true };
  }
  const status = err.code;
  // 401 heals when a rotated token is read again; 408, 409 and 429 are transient.
  const retryable = status >= 500 || [401, 408, 409, 429].includes(status);
  return { status, detail: statusMessage(err.body), retryable };
}

/** Every request gets an AbortSignal: a black-holed API server must not stall its caller. */
export function withTimeout(ms: number): ConfigurationOptions<ObservableMiddleware> {
  const pass = <T>(ctx: T): Observable<T> => new Observable(Promise.resolve(ctx));
  const middleware: ObservableMiddleware = {
    pre: (ctx) => (ctx.setSignal(AbortSignal.timeout(ms)), pass(ctx)),
    post: pass,
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}
