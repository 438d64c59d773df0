import { describe, expect, it } from 'vitest';
import { FleetError } from '../../../common/errors.ts';
import { parseJsonBody, poisonedKeyPath } from '../../../producer/json-body.ts';

describe('poisonedKeyPath', () => {
  it.each([
    ['{"__proto__":{"polluted":true}}', '__proto__'],
    ['{"a":[{"b":{"__proto__":null}}]}', 'a.0.b.__proto__'],
    ['{"max_tokens":{"":{"__proto__":null}}}', 'max_tokens..__proto__'],
    ['{"constructor":{"prototype":{"polluted":true}}}', 'constructor.prototype'],
    ['{"x":{"constructor":{"prototype":1}}}', 'x.constructor.prototype'],
  ])('%s → %s', (text, path) => {
    expect(poisonedKeyPath(JSON.parse(text))).toBe(path);
  });

  it.each(['{"constructor":"x"}', '{"constructor":{"a":1}}', '{"prototype":{}}', '[1,"__proto__"]', 'null'])(
    'lets %s through',
    (text) => expect(poisonedKeyPath(JSON.parse(text))).toBeUndefined(),
  );

  it('walks 100,000 levels without a stack overflow, and keeps the path short', () => {
    const depth = 100_000;
    const body = JSON.parse(`${'{"a":'.repeat(depth)}{"__proto__":1}${'}'.repeat(depth)}`) as unknown;
    const path = poisonedKeyPath(body)!;
    expect(path.endsWith('a.__proto__')).toBe(true);
    expect(path.length).toBeLessThanOrEqual(201);
  });
});

describe('parseJsonBody', () => {
  it('names the forbidden key as the param', () => {
    const err = (() => {
      try {
        parseJsonBody('{"input":{"__proto__":{}}}');
      } catch (e) {
        return e;
      }
    })() as FleetError;
    expect(err).toBeInstanceOf(FleetError);
    expect(err).toMatchObject({ code: 'bad_request', param: 'input.__proto__' });
  });

  it('says why text is not JSON, and that an empty body is not', () => {
    expect(() => parseJsonBody('{"a":')).toThrow(/^body: not valid JSON \(/);
    expect(() => parseJsonBody('')).toThrow(/^body: empty/);
  });

  it('parses the rest as JSON.parse does', () => {
    expect(parseJsonBody('{"constructor":"x","a":[1,{"b":null}]}')).toEqual({ constructor: 'x', a: [1, { b: null }] });
  });
});
