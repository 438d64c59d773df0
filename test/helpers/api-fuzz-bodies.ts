/**
 * Body cases: a route's valid body with one to three mutations that each make
 * it invalid by construction (a field missing, of the wrong type, out of
 * range, too long, nested thousands deep; a `__proto__`/`constructor` key; an
 * unknown field where the schema is strict; a body over the limit; not an
 * object; not JSON), then noise that keeps it invalid: bad UTF-8 bytes inside
 * a string, odd content types, huge or odd headers.
 */
import fc from 'fast-check';
import { bodyRoutes, PROTO, TEXT, type BodyRoute, type Field } from './api-fuzz-body-routes.ts';
import type { FuzzCase, FuzzTargets } from './api-fuzz-case.ts';

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

/** One arbitrary per body route. */
export function bodyCases(t: FuzzTargets): fc.Arbitrary<FuzzCase>[] {
  return bodyRoutes(t).map((r) => bodyCase(r, t));
}
