/**
 * The `openai` backend against a real OpenAI-compatible server: a second
 * interfleet fleet serving the embedded model stands in for vLLM/TGI, so the
 * forwarder is exercised over real HTTP with real streaming.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

let upstream: TestFleet;
let front: TestFleet;

beforeAll(async () => {
  upstream = await startFleet({ yaml: 'pools:\n  - name: tiny\n    backend: embedded\n' });
  front = await startFleet({
    yaml: `pools:\n  - name: remote\n    backend: openai\n    baseUrl: ${upstream.producer.url}/v1\n    upstreamModel: tiny\n`,
  });
});
afterAll(async () => {
  await front?.stop();
  await upstream?.stop();
});

describe('openai backend → OpenAI-compatible upstream', () => {
  it('passes streamed tokens through as they arrive', async () => {
    const client = new OpenAI({ baseURL: `${front.producer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: 'remote',
      messages: [{ role: 'user', content: 'Once upon a time' }],
      max_tokens: 16,
      stream: true,
    });
    const pieces: string[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) pieces.push(chunk.choices[0].delta.content);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(pieces.length).toBeGreaterThan(1);
    expect(usage?.completion_tokens).toBe(16);
  });

  it('maps an upstream that answers 404 to a clear error', async () => {
    const bad = await startFleet({
      yaml: `pools:\n  - name: remote\n    backend: openai\n    baseUrl: ${upstream.producer.url}/v1\n    upstreamModel: missing\n`,
    });
    try {
      const res = await fetch(`${bad.producer.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'remote', messages: [{ role: 'user', content: 'x' }] }),
      });
      expect(res.status).toBeGreaterThanOrEqual(400);
      const body = (await res.json()) as { error: { message: string } };
      expect(body.error.message).toMatch(/missing/);
    } finally {
      await bad.stop();
    }
  });
});
