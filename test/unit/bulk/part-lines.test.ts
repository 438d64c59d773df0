/**
 * part-lines.ts assembles output lines from pre-serialised pieces for speed;
 * these tables hold every line to what JSON.stringify of the whole line
 * object gives (the runner's format), and PartBuffer to `lines.join('\n')`.
 */
import { describe, expect, it } from 'vitest';
import type { BatchEndpoint } from '../../../common/contracts/batch.ts';
import type { TaskOutput } from '../../../common/contracts/tasks.ts';
import { FleetError } from '../../../common/errors.ts';
import { PartBuffer, partLines } from '../../../gpu-worker/bulk/part-lines.ts';

/** The output line as the runner always built it: one JSON.stringify of the whole object. */
function reference(
  endpoint: BatchEndpoint,
  /** `<batch>_<chunk>`: the ids' stem (batchRecordStem). */
  batchId: string,
  model: string,
  line: number,
  customId: string,
  output: TaskOutput,
  created: number,
): string {
  let body: unknown;
  if (endpoint === '/v1/infer') {
    body = { id: `req_${batchId}_${line}`, model, output };
  } else {
    if (output.task !== 'chat') throw new Error('not chat');
    const { promptTokens, completionTokens } = output.usage;
    body = {
      id: `chatcmpl-${batchId}-${line}`,
      object: 'chat.completion',
      created,
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: output.text },
          finish_reason: output.finishReason,
          logprobs: null,
        },
      ],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      },
    };
  }
  return JSON.stringify({
    id: `batch_req_${batchId}_${line}`,
    custom_id: customId,
    response: { status_code: 200, request_id: `req_${batchId}_${line}`, body },
    error: null,
  });
}

const awkward = [
  'b1',
  'batch_01HZX',
  'q"uote',
  'back\\slash',
  'tab\tnew\nline',
  'é😀',
  '\u2028\u2029',
  '\ud800lone',
  'x\udc00',
];
const outputs: TaskOutput[] = [
  { task: 'sentiment', label: 'positive', score: 0.5 },
  { task: 'sentiment', label: 'neutral', score: 0 },
  { task: 'sentiment', label: 'negative', score: -1e-7 },
  { task: 'summarize', summary: 'A "quoted" \\ summary\n😀 \ud800', sentences: [0, 2] },
  {
    task: 'chat',
    text: 'Once upon a time "x" \u2028',
    finishReason: 'length',
    usage: { promptTokens: 3, completionTokens: 5 },
  },
];

describe('partLines', () => {
  it('writes /v1/infer output lines byte for byte as JSON.stringify of the whole line', () => {
    for (const batchId of awkward) {
      for (const model of ['m', ...awkward]) {
        const parts = partLines({
          batchId,
          chunk: { index: 3, input: 'file:///in.jsonl' },
          endpoint: '/v1/infer',
          model,
        });
        for (const customId of awkward) {
          for (const output of outputs) {
            for (const line of [1, 42, 1_000_000]) {
              expect(parts.output(line, customId, output, 0)).toBe(
                reference('/v1/infer', `${batchId}_3`, model, line, customId, output, 0),
              );
            }
          }
        }
      }
    }
  });

  it('writes chat completion lines as before, and refuses a non-chat output there', () => {
    for (const batchId of awkward) {
      const parts = partLines({
        batchId,
        chunk: { index: 3, input: 'file:///in.jsonl' },
        endpoint: '/v1/chat/completions',
        model: 'q"m',
      });
      const chat = outputs.at(-1)!;
      expect(parts.output(7, 'c"1', chat, 1_700_000_000)).toBe(
        reference('/v1/chat/completions', `${batchId}_3`, 'q"m', 7, 'c"1', chat, 1_700_000_000),
      );
      expect(() => parts.output(7, 'c', outputs[0]!, 0)).toThrow(FleetError);
    }
  });

  it('keeps JSON.stringify semantics for outputs that are not plain JSON', () => {
    const parts = partLines({
      batchId: 'b',
      chunk: { index: 3, input: 'file:///in.jsonl' },
      endpoint: '/v1/infer',
      model: 'm',
    });
    const odd = [
      { task: 'sentiment', label: 'positive', score: 1, skipped: undefined, fn: () => 1 },
      { task: 'sentiment', label: 'positive', score: Number.NaN },
      { toJSON: () => ({ task: 'sentiment', replaced: true }) },
      (() => 1) as unknown,
      'a string',
      null,
    ] as unknown as TaskOutput[];
    for (const output of odd) {
      expect(parts.output(3, 'c', output, 0)).toBe(reference('/v1/infer', 'b_3', 'm', 3, 'c', output, 0));
    }
    expect(() => parts.output(3, 'c', { big: 1n } as unknown as TaskOutput, 0)).toThrow(TypeError);
  });

  it('writes error lines as JSON.stringify of { id, custom_id, line, response: null, error }', () => {
    for (const batchId of awkward) {
      const parts = partLines({
        batchId,
        chunk: { index: 3, input: 'file:///in.jsonl' },
        endpoint: '/v1/infer',
        model: 'm',
      });
      for (const customId of [null, ...awkward]) {
        const error = { code: 'invalid_request', message: `bad "${customId}"` };
        expect(parts.error(9, customId, error)).toBe(
          JSON.stringify({
            id: `batch_req_${batchId}_3_9`,
            custom_id: customId,
            line: 9,
            input: 'file:///in.jsonl',
            response: null,
            error,
          }),
        );
      }
    }
  });
});

describe('PartBuffer', () => {
  const jsonl = (lines: readonly string[]) => Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');

  it('is empty until a line is appended', () => {
    const part = new PartBuffer();
    expect(part.lines).toBe(0);
    expect(part.toBuffer()).toEqual(Buffer.alloc(0));
  });

  it('holds JSONL lines, multi-byte ones included, across growth, and gives each line back', () => {
    const part = new PartBuffer();
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const line = JSON.stringify({ i, text: i % 3 === 0 ? 'é😀€'.repeat(i % 50) : 'x'.repeat(i % 97) });
      lines.push(line);
      part.append(line);
    }
    lines.push('y'.repeat(200_000)); // one line larger than twice the buffer so far
    part.append(lines.at(-1)!);
    expect(part.lines).toBe(lines.length);
    expect(part.toBuffer().equals(jsonl(lines))).toBe(true);
    for (const i of [0, 1, 2, 3, 999, 2999, 3000]) expect(part.line(i)).toBe(lines[i]);
  });

  it('hands out a copy of its bytes', () => {
    const part = new PartBuffer();
    part.append('{"a":1}');
    const bytes = part.toBuffer();
    part.append('{"b":2}');
    expect(bytes.toString()).toBe('{"a":1}\n');
    expect(bytes.buffer.byteLength).toBeLessThan(64 * 1024);
  });
});
