import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '../../../common/contracts/tasks.ts';
import { FleetError } from '../../../common/errors.ts';
import { chatPrompt, EmbeddedLlm, resolveModelPath } from '../../../gpu-worker/backends/index.ts';
import { chatInput, collectDeltas } from './fixtures.ts';

const SEQUENCES = 2;
let llm: EmbeddedLlm;

beforeAll(async () => {
  llm = await EmbeddedLlm.load({ modelPath: 'models/stories260K.gguf', sequences: SEQUENCES, defaultMaxTokens: 24 });
});
afterAll(async () => {
  await llm.close();
});

describe('EmbeddedLlm', () => {
  it('generates text and streams deltas that add up to it', async () => {
    const opts = collectDeltas();
    const out = await llm.generate(chatInput('Once upon a time', { maxTokens: 40, seed: 1 }), opts);
    expect(out.text.length).toBeGreaterThan(0);
    expect(opts.deltas.length).toBeGreaterThan(1);
    expect(opts.deltas.join('')).toBe(out.text);
    expect(out.usage.promptTokens).toBeGreaterThan(0);
    expect(out.usage.completionTokens).toBeGreaterThan(0);
  });

  it.each([
    { maxTokens: 1, expected: 1 },
    { maxTokens: 7, expected: 7 },
    { maxTokens: undefined, expected: 24 }, // the pool default
  ])('stops at maxTokens=$maxTokens with finishReason length', async ({ maxTokens, expected }) => {
    const out = await llm.generate(chatInput('Once upon a time', { maxTokens }), collectDeltas());
    expect(out.finishReason).toBe('length');
    expect(out.usage.completionTokens).toBe(expected);
  });

  it('ends at a stop string with finishReason stop, leaving it out', async () => {
    const out = await llm.generate(chatInput('Once upon a time', { maxTokens: 400, stop: ['.'] }), collectDeltas());
    expect(out.finishReason).toBe('stop');
    expect(out.text).not.toContain('.');
  });

  it('is reproducible with a seed', async () => {
    const input = chatInput('Tom had a dog', { maxTokens: 30, temperature: 1, topP: 0.9, seed: 42 });
    const [a, b] = [await llm.generate(input, collectDeltas()), await llm.generate(input, collectDeltas())];
    expect(a.text).toBe(b.text);
  });

  it('stops on abort and rejects with the signal reason', async () => {
    const ac = new AbortController();
    const reason = new Error('caller went away');
    let deltas = 0;
    const run = llm.generate(chatInput('Once upon a time', { maxTokens: 30_000 }), {
      signal: ac.signal,
      onDelta: () => {
        if (++deltas === 5) ac.abort(reason);
      },
    });
    await expect(run).rejects.toBe(reason);
    expect(deltas).toBeLessThan(50);
  });

  it('runs more concurrent requests than sequences (the extra ones wait)', async () => {
    const runs = Array.from({ length: SEQUENCES * 3 }, (_, i) =>
      llm.generate(chatInput(`Lily and Ben ${i}`, { maxTokens: 20 }), collectDeltas()),
    );
    const outs = await Promise.all(runs);
    for (const out of outs) expect(out.usage.completionTokens).toBe(20);
  });

  it('rejects a request still waiting for a sequence when its signal aborts', async () => {
    const busy = Array.from({ length: SEQUENCES }, () =>
      llm.generate(chatInput('Once upon a time', { maxTokens: 100 }), collectDeltas()),
    );
    const waiting = llm.generate(chatInput('hi'), collectDeltas(AbortSignal.timeout(1)));
    await expect(waiting).rejects.toMatchObject({ name: 'TimeoutError' });
    await Promise.all(busy);
  });
});

describe('chatPrompt', () => {
  const cases: { name: string; messages: ChatMessage[]; expected: string }[] = [
    {
      name: 'takes the last user message, flattening text parts',
      messages: [
        { role: 'system', content: 'be nice' },
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'c' },
            { type: 'text', text: 'd' },
          ],
        },
      ],
      expected: 'cd',
    },
    {
      name: 'falls back to the last message with text',
      messages: [
        { role: 'system', content: 'sys' },
        { role: 'assistant', content: null },
      ],
      expected: 'sys',
    },
  ];
  it.each(cases)('$name', ({ messages, expected }) => {
    expect(chatPrompt(messages)).toBe(expected);
  });
});

describe('resolveModelPath', () => {
  it('finds the vendored model from another working directory', () => {
    expect(resolveModelPath('models/stories260K.gguf', '/')).toMatch(/models\/stories260K\.gguf$/);
  });

  it('fails with internal, naming the path', () => {
    const err = (() => {
      try {
        return resolveModelPath('models/missing.gguf');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FleetError);
    expect(err).toMatchObject({ code: 'internal', message: expect.stringContaining('models/missing.gguf') });
  });
});
