import { describe, expect, it } from 'vitest';
import { createEchoBackend } from '../../../gpu-worker/backends/index.ts';
import { chatInput, collectDeltas } from './fixtures.ts';

const echo = createEchoBackend();

describe('echo backend', () => {
  it('answers chat with the last user message, streamed word by word', async () => {
    const opts = collectDeltas();
    const out = await echo.run(
      {
        task: 'chat',
        messages: [
          { role: 'user', content: 'first' },
          { role: 'assistant', content: 'ignored' },
          { role: 'user', content: ' hello  big world ' },
        ],
      },
      opts,
    );
    expect(out).toEqual({
      task: 'chat',
      text: ' hello  big world ',
      finishReason: 'stop',
      usage: { promptTokens: 5, completionTokens: 3 },
    });
    expect(opts.deltas).toEqual([' hello  ', 'big ', 'world ']);
  });

  it('cuts chat at maxTokens words with finishReason length', async () => {
    const out = await echo.run(chatInput('one two three four', { maxTokens: 2 }), collectDeltas());
    expect(out).toMatchObject({ text: 'one two ', finishReason: 'length' });
  });

  it.each([
    { text: 'Nice. Really nice! Is it? Yes.', maxSentences: 2, summary: 'Nice. Really nice!', sentences: [0, 1] },
    { text: 'Only one', maxSentences: 3, summary: 'Only one', sentences: [0] },
  ])('summarizes "$text" to $maxSentences sentences', async ({ text, maxSentences, summary, sentences }) => {
    const out = await echo.run({ task: 'summarize', text, maxSentences }, collectDeltas());
    expect(out).toEqual({ task: 'summarize', summary, sentences });
  });

  it('answers sentiment with neutral 0', async () => {
    const out = await echo.run({ task: 'sentiment', text: 'I love it' }, collectDeltas());
    expect(out).toEqual({ task: 'sentiment', label: 'neutral', score: 0 });
  });

  it('rejects with the reason of an aborted signal', async () => {
    const ac = new AbortController();
    const reason = new Error('gone');
    ac.abort(reason);
    await expect(echo.run(chatInput('hi'), collectDeltas(ac.signal))).rejects.toBe(reason);
  });
});
