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

export interface FuzzTargets {
  /** A pool of the fleet under test (model / pool name). */
  readonly pool: string;
  /** Bull Board's names of the fleet's queues ('rt.p' and its hash-tagged '{rt.p}'). */
  readonly boardQueues: readonly string[];
  /** An existing file:// object: training bodies are valid before they are mutated. */
  readonly dataUri: string;
  readonly checkpointUri: string;
  /** The producer's bodyLimitBytes, for bodies just over it. */
  readonly bodyLimitBytes: number;
}

export interface FuzzCase {
  readonly kind: 'body' | 'path' | 'board';
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  /** Names a 400 may cite instead of `param` (the mutated fields, headers, query keys, or `body`). */
  readonly names: readonly string[];
  /** What was done, for a counterexample that reads. */
  readonly label: string;
}

type Kind = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'enum';
interface Field {
  readonly path: readonly (string | number)[];
  readonly kind: Kind;
  readonly required?: boolean;
  readonly nullable?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly maxLen?: number;
  readonly values?: readonly string[];
}
interface BodyRoute {
  readonly path: string;
  readonly base: Record<string, unknown>;
  readonly fields: readonly Field[];
  /** Unknown top-level keys are refused (strictObject), so one added is a mutation. */
  readonly strict: boolean;
}

/** Markers replaced in the serialised text (JSON.stringify cannot make bad bytes or 20 000 levels itself). */
const TEXT = '@@TEXT@@';
const PROTO = '"@@PROTO@@":0';

function bodyRoutes(t: FuzzTargets): BodyRoute[] {
  return [
    {
      path: '/v1/chat/completions',
      strict: false,
      base: { model: t.pool, messages: [{ role: 'user', content: TEXT }], max_tokens: 16, temperature: 0.5, user: 'u' },
      fields: [
        { path: ['model'], kind: 'string', required: true },
        { path: ['messages'], kind: 'array', required: true },
        {
          path: ['messages', 0, 'role'],
          kind: 'enum',
          required: true,
          values: ['system', 'developer', 'user', 'assistant', 'tool'],
        },
        { path: ['max_tokens'], kind: 'integer', nullable: true, min: 1, max: 32768 },
        { path: ['temperature'], kind: 'number', nullable: true, min: 0, max: 2 },
        { path: ['user'], kind: 'string' },
      ],
    },
    {
      path: '/v1/infer',
      strict: false,
      base: { model: t.pool, input: { task: 'sentiment', text: TEXT }, timeout_ms: 5000, stream: false },
      fields: [
        { path: ['model'], kind: 'string', required: true },
        { path: ['input'], kind: 'object', required: true },
        { path: ['input', 'task'], kind: 'enum', required: true, values: ['sentiment', 'summarize', 'chat'] },
        { path: ['input', 'text'], kind: 'string', required: true },
        { path: ['timeout_ms'], kind: 'integer', min: 1 },
        { path: ['stream'], kind: 'boolean' },
      ],
    },
    {
      path: '/v1/batches',
      strict: true,
      base: {
        input_file: t.dataUri,
        endpoint: '/v1/infer',
        model: t.pool,
        completion_window: '24h',
        metadata: { note: TEXT },
        priority: 0,
        tenant: 't',
      },
      fields: [
        { path: ['input_file'], kind: 'string', required: true },
        { path: ['endpoint'], kind: 'enum', required: true, values: ['/v1/infer', '/v1/chat/completions'] },
        { path: ['model'], kind: 'string' },
        { path: ['completion_window'], kind: 'string' },
        { path: ['metadata'], kind: 'object', nullable: true },
        { path: ['metadata', 'note'], kind: 'string', maxLen: 512 },
        { path: ['priority'], kind: 'integer', min: 0, max: 9 },
        { path: ['tenant'], kind: 'string', maxLen: 64 },
      ],
    },
    {
      path: '/v1/training/jobs',
      strict: true,
      base: {
        pool: t.pool,
        tenant: 't',
        command: 'builtin:text-classifier',
        args: [TEXT],
        data_uri: t.dataUri,
        shard: 'lines',
        mode: 'gang',
        checkpoint_uri: t.checkpointUri,
        params: { lr: 0.1 },
        workers: 1,
        rounds: 1,
        priority: 0,
        max_attempts: 1,
      },
      fields: [
        { path: ['pool'], kind: 'string', required: true },
        { path: ['command'], kind: 'string', required: true },
        { path: ['args'], kind: 'array' },
        { path: ['shard'], kind: 'enum', values: ['lines', 'objects', 'none'] },
        { path: ['mode'], kind: 'enum', values: ['gang', 'rounds'] },
        { path: ['checkpoint_uri'], kind: 'string', required: true },
        { path: ['params'], kind: 'object' },
        { path: ['workers'], kind: 'integer', required: true, min: 1, max: 256 },
        { path: ['rounds'], kind: 'integer', min: 1, max: 1000 },
        { path: ['max_attempts'], kind: 'integer', min: 1, max: 1 },
      ],
    },
  ];
}

const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v);
function fits(f: Field, v: unknown): boolean {
  if (v === null) return f.nullable === true;
  switch (f.kind) {
    case 'string':
      return typeof v === 'string';
    case 'enum':
      return typeof v === 'string' && (f.values ?? []).includes(v);
    case 'number':
    case 'integer':
      return typeof v === 'number';
    case 'boolean':
      return typeof v === 'boolean';
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
  }
}

type Mutation = { label: string; field?: string; bodyLevel?: boolean; apply(body: Record<string, unknown>): void };

function setAt(
  body: Record<string, unknown>,
  path: readonly (string | number)[],
  value: unknown,
  remove = false,
): void {
  let at = body as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) {
    // An earlier mutation replaced or removed the parent: that one already makes the body invalid.
    if (typeof at[key] !== 'object' || at[key] === null) return;
    at = at[key] as Record<string | number, unknown>;
  }
  const last = path.at(-1)!;
  if (remove) delete at[last];
  else at[last] = value;
}

/** A number no field accepts: not a safe integer where one is needed, or outside [min, max]. */
const outOfRange = (f: Field): fc.Arbitrary<number> =>
  fc
    .oneof(
      fc.constantFrom(1e300, -1e300, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, 5e-324, -0.5),
      fc.constantFrom((f.min ?? 0) - 1, (f.max ?? 2 ** 53) + 1),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
    )
    .filter(
      (v) =>
        (f.kind === 'integer' && !Number.isSafeInteger(v)) ||
        (f.min !== undefined && v < f.min) ||
        (f.max !== undefined && v > f.max),
    );

function fieldMutation(f: Field): fc.Arbitrary<Mutation> {
  const name = f.path.join('.');
  const set = (label: string, value: unknown): Mutation => ({
    label,
    field: name,
    apply: (b) => setAt(b, f.path, value),
  });
  const options: fc.Arbitrary<Mutation>[] = [
    fc
      .jsonValue({ maxDepth: 3 })
      .filter((v) => !fits(f, v))
      .map((v) => set(`${name} = ${JSON.stringify(v).slice(0, 60)}`, v)),
    fc.integer({ min: 2000, max: 20_000 }).map((depth) => set(`${name} nested ${depth} deep`, `@@DEEP${depth}@@`)),
  ];
  if (f.required)
    options.push(fc.constant({ label: `${name} missing`, field: name, apply: (b) => setAt(b, f.path, 0, true) }));
  if (f.kind === 'integer' || f.kind === 'number') options.push(outOfRange(f).map((v) => set(`${name} = ${v}`, v)));
  if (f.maxLen !== undefined) {
    const max = f.maxLen;
    options.push(fc.integer({ min: 1, max: 5000 }).map((n) => set(`${name} ${max + n} chars`, 'x'.repeat(max + n))));
  }
  return fc.oneof(...options);
}

const dangerousKeys = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__'];

function mutations(route: BodyRoute, t: FuzzTargets): fc.Arbitrary<Mutation> {
  const protoKey = fc
    .constantFrom(
      ...route.fields.filter((f) => f.kind === 'object').map((f) => f.path),
      [] as readonly (string | number)[],
    )
    .map((path): Mutation => ({
      label: `__proto__/constructor.prototype key at ${path.join('.') || 'the top'}`,
      bodyLevel: true,
      apply: (b) => (path.length === 0 ? Object.assign(b, { '@@PROTO@@': 0 }) : setAt(b, [...path, '@@PROTO@@'], 0)),
    }));
  const options: fc.Arbitrary<Mutation>[] = [...route.fields.map(fieldMutation), protoKey];
  if (route.strict) {
    const key = fc.oneof(fc.constantFrom(...dangerousKeys), fc.string({ minLength: 1, maxLength: 20 }));
    const unknownKey = fc
      .tuple(
        key.filter((k) => !(k in route.base) && !k.includes('@@')),
        fc.jsonValue({ maxDepth: 2 }),
      )
      .map(([k, v]): Mutation => ({ label: `unknown field ${JSON.stringify(k)}`, field: k, apply: (b) => (b[k] = v) }));
    options.push(unknownKey);
  }
  const oversize: Mutation = {
    label: `a body over ${t.bodyLimitBytes} bytes`,
    bodyLevel: true,
    apply: (b) => (b['@@pad'] = 'y'.repeat(t.bodyLimitBytes + 1)),
  };
  return fc.oneof({ arbitrary: fc.oneof(...options), weight: 9 }, { arbitrary: fc.constant(oversize), weight: 1 });
}

const badUtf8 = fc.oneof(
  fc.constantFrom([0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe, 0xff]),
  fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 8 }),
);

const contentTypes = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'APPLICATION/JSON',
  'application/jsonx',
  'text/json',
];

/** Header noise: a huge header within Node's 16 KiB limit, an odd Idempotency-Key or timeout header. */
const headerNoise: fc.Arbitrary<Record<string, string>> = fc.oneof<fc.Arbitrary<Record<string, string>>[]>(
  fc.constant({}),
  fc.integer({ min: 1, max: 12_000 }).map((n) => ({ 'x-fuzz-pad': 'a'.repeat(n) })),
  fc
    .string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 400 })
    .map((s) => ({ 'idempotency-key': s })),
  fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('-1', '0', '1e9', '1.5', 'NaN')).map((s) => ({
    'x-interfleet-timeout-ms': s.replace(/[^\x20-\x7e]/g, ''),
  })),
);

function bodyCase(route: BodyRoute, t: FuzzTargets): fc.Arbitrary<FuzzCase> {
  return fc
    .record({
      muts: fc.array(mutations(route, t), { minLength: 1, maxLength: 3 }),
      notJson: fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 8 },
        fc.constantFrom('[]', 'null', '"x"', '42', 'true', '[{}]', ''),
        badUtf8.map((bytes) => ({ bytes })),
        fc.nat().map((cut) => ({ cut })),
      ),
      bad: fc.option(badUtf8, { nil: undefined }),
      contentType: fc.option(fc.constantFrom(...contentTypes, 'none'), { nil: undefined, freq: 3 }),
      headers: headerNoise,
      proto: fc.constantFrom('"__proto__":{"polluted":true}', '"constructor":{"prototype":{"polluted":true}}'),
    })
    .map(({ muts, notJson, bad, contentType, headers, proto }) => {
      const body = structuredClone(route.base);
      for (const m of muts) m.apply(body);
      let text = JSON.stringify(body)
        .replace(PROTO, proto)
        .replace(/"@@DEEP(\d+)@@"/g, (_, n: string) => {
          const depth = Number(n);
          return depth % 2 === 0
            ? '['.repeat(depth) + '1' + ']'.repeat(depth)
            : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
        });
      const names = muts.flatMap((m) => (m.field ? [m.field] : []));
      const labels = muts.map((m) => m.label);
      let bodyLevel = muts.some((m) => m.bodyLevel);
      let bytes: Buffer;
      if (typeof notJson === 'string') {
        text = notJson;
        labels.push(`body ${JSON.stringify(notJson)}`);
        bodyLevel = true;
      } else if (notJson && 'cut' in notJson) {
        text = text.slice(0, notJson.cut % text.length);
        labels.push('truncated JSON');
        bodyLevel = true;
      }
      const [head, ...rest] = text.split(TEXT);
      bytes = Buffer.concat([
        Buffer.from(head!),
        ...rest.flatMap((r) => [Buffer.from(bad ?? []), Buffer.from(`hello${r}`)]),
      ]);
      if (bad) labels.push(`bytes ${Buffer.from(bad).toString('hex')} in a string`);
      if (typeof notJson === 'object' && 'bytes' in notJson) {
        bytes = Buffer.concat([Buffer.from(notJson.bytes), bytes]);
        labels.push(`bytes ${Buffer.from(notJson.bytes).toString('hex')} before the body`);
        bodyLevel = true;
      }
      const h: Record<string, string> = { ...headers };
      if (contentType !== 'none') h['content-type'] = contentType ?? 'application/json';
      if (contentType) labels.push(`content-type ${contentType}`);
      if (headers['x-fuzz-pad']) labels.push(`a ${headers['x-fuzz-pad'].length}-byte header`);
      for (const k of ['idempotency-key', 'x-interfleet-timeout-ms'])
        if (k in headers) labels.push(`${k}: ${JSON.stringify(headers[k]).slice(0, 40)}`);
      return {
        kind: 'body' as const,
        method: 'POST' as const,
        path: route.path,
        headers: h,
        body: bytes,
        names: [
          ...names,
          ...Object.keys(headers),
          ...(bodyLevel || contentType ? ['body', 'json', 'content-type'] : []),
        ],
        label: `POST ${route.path}: ${labels.join('; ')}`,
      };
    });
}

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
  const bodies = bodyRoutes(t).map((r) => ({ arbitrary: bodyCase(r, t), weight: 3 }));
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
