/**
 * Which scope each route needs: one table, so a reader sees every route's
 * rule in one place and routes stay free of auth code. A key with `admin`
 * passes every check (hasScope). Reading a job is allowed with `read` or with
 * the scope that submits that kind of job, so a key that may run batches can
 * also poll the batches it made (tenant checks keep it to its own).
 */
import type { Scope } from '../../common/auth/principal.ts';
import { BOARD_PATH } from '../board.ts';

export type RouteAccess =
  /** Probes and Prometheus: no key (a scraper or kubelet has none). */
  | { readonly kind: 'public' }
  /** A key is needed, and one of `anyOf` (empty: any known key). */
  | { readonly kind: 'key'; readonly anyOf: readonly Scope[]; readonly board: boolean };

const key = (...anyOf: Scope[]): RouteAccess => ({ kind: 'key', anyOf, board: false });

const routes: Record<string, RouteAccess> = {
  'GET /healthz': { kind: 'public' },
  'GET /readyz': { kind: 'public' },
  'GET /metrics': { kind: 'public' },
  // The openai client lists models before anything else; any key may.
  'GET /v1/models': key(),
  'POST /v1/chat/completions': key('infer'),
  'POST /v1/infer': key('infer'),
  'POST /v1/batches': key('batch'),
  'POST /v1/batches/:batch_id/cancel': key('batch'),
  'GET /v1/batches': key('read', 'batch'),
  'GET /v1/batches/:batch_id': key('read', 'batch'),
  'POST /v1/training/jobs': key('train'),
  'POST /v1/training/jobs/:id/cancel': key('train'),
  'GET /v1/training/jobs/:id': key('read', 'train'),
  'GET /v1/training/jobs/:id/logs': key('read', 'train'),
  'GET /v1/trained-models': key('read', 'train'),
  'GET /v1/trained-models/:name': key('read', 'train'),
  'GET /v1/scheduler/explain': key('read'),
};

/**
 * The rule for a request, by its method and matched route (fastify's
 * `routeOptions.url`; undefined when no route matched). Bull Board: viewing
 * needs `read`, anything else (retry, clean, remove, promote...) `admin`. A
 * route missing from the table: `read` to GET, `admin` otherwise, so a new
 * route is never open by accident.
 */
export function routeAccess(method: string, url: string | undefined): RouteAccess {
  const reads = method === 'GET' || method === 'HEAD';
  if (url !== undefined && (url === BOARD_PATH || url.startsWith(`${BOARD_PATH}/`))) {
    return { kind: 'key', anyOf: [reads ? 'read' : 'admin'], board: true };
  }
  // No route matched: a key is still needed, so a 404 tells nobody which routes exist.
  if (url === undefined) return key();
  return routes[`${method === 'HEAD' ? 'GET' : method} ${url}`] ?? key(reads ? 'read' : 'admin');
}
