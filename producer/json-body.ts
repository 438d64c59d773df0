/**
 * The API's JSON body parser. fastify's own refuses `__proto__` keys and
 * `constructor.prototype` (prototype poisoning), but answers "Body is not
 * valid JSON" for those and for real syntax errors alike, naming nothing.
 * This one says what and where: the parser's own message for a syntax error,
 * or the path of the forbidden key as the 400's `param`.
 */
import type { FastifyInstance } from 'fastify';
import { FleetError } from '../common/errors.ts';

interface Visit {
  value: unknown;
  key: string;
  parent: Visit | undefined;
}

const pathOf = (v: Visit): string => {
  const keys: string[] = [];
  for (let at: Visit | undefined = v; at?.parent; at = at.parent) keys.push(at.key);
  const path = keys.reverse().join('.');
  // A key found thousands of levels down: its path is kept readable.
  return path.length > 200 ? `${path.slice(0, 100)}…${path.slice(-100)}` : path;
};

/** The path of the first `__proto__` key or `constructor.prototype` in a parsed body; iterative (bodies may nest 100,000 deep). */
export function poisonedKeyPath(body: unknown): string | undefined {
  const stack: Visit[] = [{ value: body, key: '', parent: undefined }];
  while (stack.length > 0) {
    const visit = stack.pop()!;
    const { value } = visit;
    if (typeof value !== 'object' || value === null) continue;
    for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
      const at = { value: child, key, parent: visit };
      if (key === '__proto__') return pathOf(at);
      const isObject = typeof child === 'object' && child !== null;
      if (key === 'constructor' && isObject && Object.hasOwn(child, 'prototype')) {
        return pathOf({ value: undefined, key: 'prototype', parent: at });
      }
      if (isObject) stack.push(at);
    }
  }
  return undefined;
}

export function parseJsonBody(text: string): unknown {
  if (text.length === 0) throw new FleetError('bad_request', 'body: empty, but Content-Type says application/json');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new FleetError('bad_request', `body: not valid JSON (${(err as Error).message})`);
  }
  // Like fastify's secure-json-parse: only a body that mentions the keys is walked.
  const path = /__proto__|constructor/.test(text) ? poisonedKeyPath(body) : undefined;
  if (path !== undefined) {
    throw new FleetError('bad_request', `${path}: a key the API refuses (__proto__ or constructor.prototype)`, {
      param: path,
    });
  }
  return body;
}

/** Replaces fastify's application/json parser with parseJsonBody. */
export function useJsonBodyParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    try {
      done(null, parseJsonBody(text as string));
    } catch (err) {
      done(err as FleetError, undefined);
    }
  });
}
