import { afterEach, describe, expect, it } from 'vitest';
import { backendTasks } from '../../../common/backend-tasks.ts';
import { backendKinds } from '../../../common/config.ts';
import { createBackend, type ModelBackend } from '../../../gpu-worker/backends/index.ts';
import { poolFixture } from './fixtures.ts';

const extra: Record<string, Record<string, unknown>> = { openai: { baseUrl: 'http://127.0.0.1:1/v1' } };
const opened: ModelBackend[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((b) => b.close()));
});

describe('createBackend', () => {
  it.each(backendKinds)('builds %s, whose tasks match common/backend-tasks.ts', async (kind) => {
    const backend = await createBackend(poolFixture({ backend: kind, ...extra[kind] }), { concurrency: 2 });
    opened.push(backend);
    expect(backend.kind).toBe(kind);
    expect([...backend.tasks].sort()).toEqual([...backendTasks[kind]].sort());
  });

  it('fails at creation, naming the path, when the embedded model file is missing', async () => {
    const pool = poolFixture({ backend: 'embedded', modelPath: 'models/nope.gguf' });
    await expect(createBackend(pool, { concurrency: 1 })).rejects.toMatchObject({
      code: 'internal',
      message: expect.stringContaining('models/nope.gguf'),
    });
  });

  it('runs every task on the embedded backend', async () => {
    const backend = await createBackend(poolFixture({ defaultMaxTokens: 8 }), { concurrency: 1 });
    opened.push(backend);
    const signal = new AbortController().signal;
    const chat = await backend.run({ task: 'chat', messages: [{ role: 'user', content: 'Once' }] }, { signal });
    expect(chat).toMatchObject({ task: 'chat', finishReason: 'length', usage: { completionTokens: 8 } });
    const sentiment = await backend.run({ task: 'sentiment', text: 'What a wonderful day!' }, { signal });
    expect(sentiment).toMatchObject({ task: 'sentiment', label: 'positive' });
    const summary = await backend.run(
      { task: 'summarize', text: 'A cat. A dog. A cat and a dog.', maxSentences: 1 },
      { signal },
    );
    expect(summary).toMatchObject({ task: 'summarize', sentences: [expect.any(Number)] });
  });
});
