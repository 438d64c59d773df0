/**
 * parseBatchLine recognises the common `/v1/infer` shape by hand; these
 * tables hold that fast path to the zod-only reference: every line, valid
 * or not, must give the same result, down to the message and the key order
 * of the task input.
 */
import { describe, expect, it, vi } from 'vitest';
import { parseBatchLine, parseBatchLineWithSchemas } from '../../../common/batch/parse-line.ts';
import { batchInputLineSchema, type BatchEndpoint } from '../../../common/contracts/batch.ts';

const line = (fields: Record<string, unknown>): string => JSON.stringify(fields);
const infer = (body: unknown, extra: Record<string, unknown> = {}): string =>
  line({ custom_id: 'c1', method: 'POST', url: '/v1/infer', body, ...extra });
const sentiment = (input: Record<string, unknown>, body: Record<string, unknown> = {}): string =>
  infer({ ...body, input: { task: 'sentiment', ...input } });

/** [what, line, valid?] */
const cases: Array<[string, string, boolean]> = [
  ['plain sentiment', sentiment({ text: 'good' }), true],
  ['input keys in another order', infer({ input: { text: 'good', task: 'sentiment' } }), true],
  ['extra keys at every level are stripped', sentiment({ text: 'x', extra: 1 }, { other: [1] }), true],
  ['extra top-level key', infer({ input: { task: 'sentiment', text: 'x' } }, { note: 'n' }), true],
  ['body.model naming the batch model', sentiment({ text: 'x' }, { model: 'm' }), true],
  ['body.model naming another model', sentiment({ text: 'x' }, { model: 'other' }), false],
  ['body.model empty', sentiment({ text: 'x' }, { model: '' }), false],
  ['body.model not a string', sentiment({ text: 'x' }, { model: 7 }), false],
  ['body.model null', sentiment({ text: 'x' }, { model: null }), false],
  ['one-character text', sentiment({ text: 'a' }), true],
  ['empty text', sentiment({ text: '' }), false],
  ['text not a string', sentiment({ text: 5 }), false],
  ['text null', sentiment({ text: null }), false],
  ['text missing', sentiment({}), false],
  ['whitespace text', sentiment({ text: '   ' }), true],
  ['unicode text', sentiment({ text: 'très 😀 bien \u2028' }), true],
  [
    'lone surrogate in text',
    '{"custom_id":"c","method":"POST","url":"/v1/infer","body":{"input":{"task":"sentiment","text":"\\ud800"}}}',
    true,
  ],
  ['summarize without maxSentences (default)', infer({ input: { task: 'summarize', text: 'A. B.' } }), true],
  ['summarize with maxSentences', infer({ input: { task: 'summarize', text: 'A. B.', maxSentences: 2 } }), true],
  ['summarize maxSentences 0', infer({ input: { task: 'summarize', text: 'A.', maxSentences: 0 } }), false],
  ['summarize maxSentences 51', infer({ input: { task: 'summarize', text: 'A.', maxSentences: 51 } }), false],
  ['summarize maxSentences 2.5', infer({ input: { task: 'summarize', text: 'A.', maxSentences: 2.5 } }), false],
  ['summarize maxSentences null', infer({ input: { task: 'summarize', text: 'A.', maxSentences: null } }), false],
  ['summarize empty text', infer({ input: { task: 'summarize', text: '' } }), false],
  ['chat task', infer({ input: { task: 'chat', messages: [{ role: 'user', content: 'hi' }] } }), true],
  ['chat task with text', infer({ input: { task: 'chat', text: 'hi' } }), false],
  ['unknown task', infer({ input: { task: 'translate', text: 'hi' } }), false],
  ['task missing', infer({ input: { text: 'hi' } }), false],
  ['input an array', infer({ input: [{ task: 'sentiment', text: 'x' }] }), false],
  ['input a string', infer({ input: 'x' }), false],
  ['input null', infer({ input: null }), false],
  ['input missing', infer({}), false],
  ['body an array', infer([{ input: { task: 'sentiment', text: 'x' } }]), false],
  ['body null', infer(null), false],
  ['body a string', infer('x'), false],
  ['body missing', line({ custom_id: 'c1', method: 'POST', url: '/v1/infer' }), false],
  ['method GET', sentiment({ text: 'x' }).replace('"POST"', '"GET"'), false],
  ['method post', sentiment({ text: 'x' }).replace('"POST"', '"post"'), false],
  [
    'method missing',
    line({ custom_id: 'c', url: '/v1/infer', body: { input: { task: 'sentiment', text: 'x' } } }),
    false,
  ],
  ['url of the other endpoint', sentiment({ text: 'x' }).replace('/v1/infer', '/v1/chat/completions'), false],
  ['unknown url', sentiment({ text: 'x' }).replace('/v1/infer', '/v1/other'), false],
  ['custom_id empty', sentiment({ text: 'x' }).replace('"c1"', '""'), false],
  [
    'custom_id of 512 characters',
    infer({ input: { task: 'sentiment', text: 'x' } }, { custom_id: 'i'.repeat(512) }),
    true,
  ],
  [
    'custom_id of 513 characters',
    infer({ input: { task: 'sentiment', text: 'x' } }, { custom_id: 'i'.repeat(513) }),
    false,
  ],
  [
    'custom_id of 512 astral characters (zod counts code points)',
    infer({ input: { task: 'sentiment', text: 'x' } }, { custom_id: '😀'.repeat(512) }),
    true,
  ],
  [
    'custom_id of 513 astral characters',
    infer({ input: { task: 'sentiment', text: 'x' } }, { custom_id: '😀'.repeat(513) }),
    false,
  ],
  ['custom_id a number', sentiment({ text: 'x' }).replace('"c1"', '12'), false],
  ['custom_id null', sentiment({ text: 'x' }).replace('"c1"', 'null'), false],
  [
    'custom_id missing',
    line({ method: 'POST', url: '/v1/infer', body: { input: { task: 'sentiment', text: 'x' } } }),
    false,
  ],
  [
    '__proto__ key in body',
    '{"custom_id":"c","method":"POST","url":"/v1/infer","body":{"__proto__":{"model":"other"},"input":{"task":"sentiment","text":"x"}}}',
    true,
  ],
  [
    '__proto__ key in input',
    '{"custom_id":"c","method":"POST","url":"/v1/infer","body":{"input":{"__proto__":{"text":""},"task":"sentiment","text":"x"}}}',
    true,
  ],
  [
    '__proto__ key at the top',
    '{"__proto__":{"url":"/v1/x"},"custom_id":"c","method":"POST","url":"/v1/infer","body":{"input":{"task":"sentiment","text":"x"}}}',
    true,
  ],
  [
    'constructor key in body',
    '{"custom_id":"c","method":"POST","url":"/v1/infer","body":{"constructor":{"prototype":1},"input":{"task":"sentiment","text":"x"}}}',
    true,
  ],
  [
    'duplicate keys (last wins)',
    '{"custom_id":"c","method":"POST","url":"/v1/infer","body":{"input":{"task":"sentiment","text":""}},"body":{"input":{"task":"sentiment","text":"y"}}}',
    true,
  ],
  ['a JSON array', '[1,2]', false],
  ['a JSON string', '"x"', false],
  ['JSON null', 'null', false],
  ['a number', '42', false],
  ['not JSON', '{"custom_id":', false],
  ['stray text after JSON', `${sentiment({ text: 'x' })}x`, false],
];

describe('parseBatchLine fast path agrees with the zod schemas', () => {
  const batches: Array<{ endpoint: BatchEndpoint; model: string }> = [
    { endpoint: '/v1/infer', model: 'm' },
    { endpoint: '/v1/infer', model: '' },
    { endpoint: '/v1/chat/completions', model: 'm' },
  ];
  for (const batch of batches) {
    it.each(cases)(`${batch.endpoint} model "${batch.model}": %s`, (_what, text) => {
      const fast = parseBatchLine(text, batch);
      const exact = parseBatchLineWithSchemas(text, batch);
      expect(fast).toStrictEqual(exact);
      // Same keys in the same order, so outputs that embed the input serialise alike.
      expect(JSON.stringify(fast)).toBe(JSON.stringify(exact));
    });
  }

  it.each(cases)('on a /v1/infer batch of model m, %s is valid: %s', (_what, text, valid) => {
    expect(parseBatchLine(text, { endpoint: '/v1/infer', model: 'm' }).ok).toBe(valid);
  });

  // Every field of a valid line, replaced by each of these values or removed.
  const paths = [
    ['custom_id'],
    ['method'],
    ['url'],
    ['body'],
    ['body', 'model'],
    ['body', 'input'],
    ['body', 'input', 'task'],
    ['body', 'input', 'text'],
    ['body', 'input', 'maxSentences'],
  ];
  const values: unknown[] = [undefined, null, 0, 1, 3, 50, 51, -1, 2.5, true, '', 'x', 'm', 'POST', '/v1/infer'];
  values.push('sentiment', 'summarize', 'chat', [], ['x'], {}, { task: 'sentiment', text: 'x' });
  const mutated: string[] = [];
  for (const task of ['sentiment', 'summarize']) {
    for (const path of paths) {
      for (const value of values) {
        const root = { custom_id: 'c1', method: 'POST', url: '/v1/infer', body: { input: { task, text: 'good' } } };
        let at: Record<string, unknown> = root;
        for (const key of path.slice(0, -1)) at = at[key] as Record<string, unknown>;
        if (value === undefined) delete at[path.at(-1)!];
        else at[path.at(-1)!] = value;
        mutated.push(JSON.stringify(root));
      }
    }
  }

  it(`agrees on ${mutated.length} one-field mutations of valid lines`, () => {
    for (const batch of batches) {
      for (const text of mutated) {
        const fast = parseBatchLine(text, batch);
        expect(JSON.stringify(fast), text).toBe(JSON.stringify(parseBatchLineWithSchemas(text, batch)));
        expect(fast, text).toStrictEqual(parseBatchLineWithSchemas(text, batch));
      }
    }
  });

  it('takes the fast path (no schema walk) for the usual lines, and zod for the rest', () => {
    const walk = vi.spyOn(batchInputLineSchema, 'safeParse');
    try {
      const batch = { endpoint: '/v1/infer', model: 'm' } as const;
      parseBatchLine(sentiment({ text: 'good' }), batch);
      parseBatchLine(infer({ input: { task: 'summarize', text: 'A. B.' } }), batch);
      expect(walk).not.toHaveBeenCalled();
      parseBatchLine(sentiment({ text: '' }), batch);
      expect(walk).toHaveBeenCalledTimes(1);
    } finally {
      walk.mockRestore();
    }
  });

  it('applies the summarize default as the schema does', () => {
    const parsed = parseBatchLine(infer({ input: { task: 'summarize', text: 'A.' } }), {
      endpoint: '/v1/infer',
      model: 'm',
    });
    expect(parsed).toEqual({ ok: true, customId: 'c1', input: { task: 'summarize', text: 'A.', maxSentences: 3 } });
  });
});
