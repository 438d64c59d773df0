/**
 * The official `openai` npm client against the real producer and a real
 * embedded-model worker: it must work unchanged, streaming included.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

let fleet: TestFleet;
let client: OpenAI;

beforeAll(async () => {
  fleet = await startFleet({ yaml: 'pools:\n  - name: tiny\n    backend: embedded\n' });
  client = new OpenAI({ baseURL: `${fleet.producer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => fleet.stop());

describe('openai client against /v1', () => {
  it('lists the pools as models', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny']);
  });

  it('completes a chat without streaming', async () => {
    const completion = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Once upon a time' }],
      max_tokens: 12,
    });
    const choice = completion.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content!.length).toBeGreaterThan(0);
    expect(choice.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({ completion_tokens: 12 });
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
  });

  it('streams a chat as it is generated, ending with usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'The little dog' }],
      max_tokens: 20,
      stream: true,
      stream_options: { include_usage: true },
    });
    const pieces: string[] = [];
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.delta.content) pieces.push(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(pieces.length).toBeGreaterThan(1);
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(20);
  });

  it('raises typed errors from OpenAI-shaped error bodies', async () => {
    const unknown = client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    await expect(unknown).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(unknown).rejects.toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });

    const bad = client.chat.completions.create({ model: 'tiny', messages: [] });
    await expect(bad).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(bad).rejects.toMatchObject({ param: 'messages' });
  });
});
