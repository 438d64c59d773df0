/**
 * Fuzzed requests over every route of the producer, and the judge of each
 * answer: the API fuzz test (test/e2e/api-fuzz.test.ts) and the chaos row
 * (test/chaos/rows/fuzz-bodies.ts) share them.
 *
 * A body case starts from a valid body of its route and applies at least one
 * mutation that makes it invalid by construction (a field missing, of the
 * wrong type, out of range, too long, nested thousands deep, a
 * `__proto__`/`constructor` key, not an object, not JSON), then noise that
 * keeps it invalid (bad UTF-8 bytes in a string, odd content types, huge
 * headers). So every body case must get a 4xx, and a 400 must name the field.
 * Path, query and Bull Board cases must never get a 5xx.
 */
import fc from 'fast-check';
import { bodyCases } from './api-fuzz-bodies.ts';
import type { FuzzCase, FuzzTargets } from './api-fuzz-case.ts';

export type { FuzzCase, FuzzTargets } from './api-fuzz-case.ts';

/** Path segments and query values: ids of the right shape that name nothing, odd strings, bad percent-escapes. */
const segment = fc.oneof(
  fc.stringMatching(/^batch_[0-9a-f]{20}$/),
  fc.stringMatching(/^train_[0-9a-f]{20}$/),
  fc.constantFrom('__proto__', 'constructor', 'prototype', '%FF%FE', '%C0%80', '%ED%A0%80', '%', 'a'.repeat(5000)),
  fc.string({ unit: 'grapheme', maxLength: 40 }).map(encodeURIComponent),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, ''))),
);
const queryKey = fc.oneof(
  fc.constantFrom('limit', 'after', 'round', 'rank', 'tail', 'pool', '__proto__', 'constructor', '__proto__[polluted]'),
  fc.constantFrom('constructor[prototype][polluted]', 'activeQueue', 'status', 'page', 'jobsPerPage'),
  fc.string({ minLength: 1, maxLength: 10 }).map(encodeURIComponent),
);
const queryValue = fc.oneof(
  fc.constantFrom(
    '1',
    '0',
    '-1',
    '1e9',
    '1.5',
    'NaN',
    'Infinity',
    '0x10',
    '',
    'true',
    '%FF',
    'batch_00000000000000000000',
  ),
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  fc.integer().map(String),
);
const query = fc.array(fc.tuple(queryKey, queryValue), { maxLength: 4 }).map((pairs) => ({
  keys: pairs.map(([k]) => decodeURIComponentSafe(k)),
  text: pairs.map(([k, v]) => `${k}=${v}`).join('&'),
}));

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function pathCase(): fc.Arbitrary<FuzzCase> {
  const routes: Array<[FuzzCase['method'], string, string]> = [
    ['GET', '/v1/batches/:s', 'batch_id'],
    ['POST', '/v1/batches/:s/cancel', 'batch_id'],
    ['GET', '/v1/training/jobs/:s', 'id'],
    ['POST', '/v1/training/jobs/:s/cancel', 'id'],
    ['GET', '/v1/training/jobs/:s/logs', 'id'],
    ['GET', '/v1/trained-models/:s', 'name'],
    ['GET', '/v1/batches', ''],
    ['GET', '/v1/trained-models', ''],
    ['GET', '/v1/scheduler/explain', ''],
    ['GET', '/v1/models', ''],
    ['GET', '/healthz', ''],
    ['GET', '/readyz', ''],
    ['GET', '/metrics', ''],
  ];
  return fc.tuple(fc.constantFrom(...routes), segment, query).map(([[method, route, param], s, q]) => {
    const path = `${route.replace(':s', s)}${q.text ? `?${q.text}` : ''}`;
    return {
      kind: 'path' as const,
      method,
      path,
      headers: {},
      names: [param, ...q.keys, 'url'].filter(Boolean),
      label: `${method} ${path.slice(0, 200)}`,
    };
  });
}

function boardCase(t: FuzzTargets): fc.Arbitrary<FuzzCase> {
  const queue = fc.oneof(fc.constantFrom(...t.boardQueues), segment);
  const status = fc.oneof(
    fc.constantFrom('completed', 'failed', 'waiting', 'active', 'delayed', 'paused', 'latest'),
    segment,
  );
  const action = fc.constantFrom('retry', 'promote', 'clean');
  const api = '/admin/queues/api';
  const json = fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v)));
  const req = (method: FuzzCase['method'], path: string, body?: Buffer): FuzzCase => ({
    kind: 'board',
    method,
    path: `${api}${path}`,
    headers: body ? { 'content-type': 'application/json' } : {},
    ...(body && { body }),
    names: [],
    label: `${method} ${api}${path.slice(0, 200)}`,
  });
  const q = (name: string): string => encodeURIComponent(name);
  return fc.oneof(
    fc
      .tuple(queue, status, queryValue, queryValue)
      .map(([n, s, page, per]) =>
        req('GET', `/queues?activeQueue=${q(n)}&status=${s}&page=${page}&jobsPerPage=${per}`),
      ),
    fc
      .tuple(queue, segment, fc.constantFrom('', '/logs', '/flow'))
      .map(([n, id, tail]) => req('GET', `/queues/${q(n)}/${id}${tail}`)),
    fc.tuple(queue, queryValue).map(([n, v]) => req('GET', `/job-schedulers?queueName=${q(n)}${v}`)),
    fc
      .constantFrom('/redis/stats', '/queues/pause', '/queues/resume')
      .map((p) => req(p === '/redis/stats' ? 'GET' : 'PUT', p)),
    fc.tuple(queue, json).map(([n, body]) => req('POST', `/queues/${q(n)}/add`, body)),
    fc
      .tuple(queue, fc.constantFrom('retry', 'clean'), status)
      .map(([n, a, s]) => req('PUT', `/queues/${q(n)}/${a}/${s}`)),
    fc
      .tuple(queue, fc.constantFrom('pause', 'resume', 'empty', 'obliterate', 'promote'))
      .map(([n, a]) => req('PUT', `/queues/${q(n)}/${a}`)),
    fc.tuple(queue, segment, action).map(([n, id, a]) => req('PUT', `/queues/${q(n)}/${id}/${a}`)),
  );
}

/** Every kind of case, body cases most often (they carry most of the mutations). */
export function fuzzCase(t: FuzzTargets): fc.Arbitrary<FuzzCase> {
  const bodies = bodyCases(t).map((arbitrary) => ({ arbitrary, weight: 3 }));
  return fc.oneof(...bodies, { arbitrary: pathCase(), weight: 3 }, { arbitrary: boardCase(t), weight: 2 });
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

export async function send(baseUrl: string, c: FuzzCase, timeoutMs = 10_000): Promise<Answer> {
  const res = await fetch(`${baseUrl}${c.path}`, {
    method: c.method,
    headers: c.headers,
    ...(c.body !== undefined && { body: c.body }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Why the answer breaks the rules, or undefined when it keeps them. */
export function judge(c: FuzzCase, a: Answer): string | undefined {
  // /readyz says 503 + Retry-After while a pool has no worker: an answer, not a failure.
  const unavailable = a.status === 503 && a.headers.has('retry-after') && c.kind !== 'body';
  if (a.status >= 500 && !unavailable) return `${a.status}: ${a.text.slice(0, 300)}`;
  if (c.kind === 'body' && (a.status < 400 || a.status >= 500))
    return `${a.status} for an invalid body: ${a.text.slice(0, 300)}`;
  if (a.status !== 400 || c.kind === 'board') return undefined;
  let parsed: { error?: { message?: string; param?: string | null }; message?: string };
  try {
    parsed = JSON.parse(a.text) as typeof parsed;
  } catch {
    return `400 that is not JSON: ${a.text.slice(0, 200)}`;
  }
  if (parsed.error?.param) return undefined;
  // fastify answers a bad percent-escape in the URL itself (FST_ERR_BAD_URL, its own shape): it names the url.
  const message = String(parsed.error?.message ?? parsed.message ?? '');
  const lower = message.toLowerCase();
  if (c.names.some((n) => n.length > 0 && lower.includes(n.toLowerCase()))) return undefined;
  return `400 names no field (param null; expected one of ${JSON.stringify(c.names.slice(0, 8))}): ${message.slice(0, 300)}`;
}

/** Object.prototype's own property names: a pollution adds one (or changes what `{}` inherits). */
export function prototypeFingerprint(): string {
  const probe = {} as Record<string, unknown>;
  return JSON.stringify([Object.getOwnPropertyNames(Object.prototype).sort(), probe['polluted'] ?? null]);
}
