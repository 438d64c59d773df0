/**
 * bench:autoscale-live's load: each trace request sent once, at its
 * compressed arrival time, as a streaming chat completion through the
 * official `openai` client (no retries), with exactly its prompt tokens (the
 * sim counts characters ÷ 4) and `max_tokens` = its generated tokens. The
 * first token is timed client-side: from sending to the first chunk with
 * content. Refusals (429/503) are counted apart, with whether they carried
 * Retry-After. Bounded: every request is sent once and has a timeout.
 */
import OpenAI from 'openai';
import type { TraceRequest } from '../../common/autoscale/replay/trace.ts';

export interface LiveOutcome {
  /** Trace ms of its scheduled arrival. */
  arrivalMs: number;
  /** Wall ms it was sent after it was due (event-loop lag of this process). */
  sendLagMs: number;
  /** Wall ms from sending to the first content token; undefined without one. */
  firstTokenWallMs: number | undefined;
  outcome: 'ok' | 'refused' | 'failed';
  retryAfter?: boolean;
  error?: string;
}

/** `tokens` of the sim's estimate (characters ÷ 4) in short words, so each streamed token is a word. */
export function promptOf(tokens: number): string {
  const chars = 4 * tokens;
  return 'word '.repeat(Math.ceil(chars / 5)).slice(0, chars);
}

export interface ReplayLoadOptions {
  baseURL: string;
  model: string;
  requests: readonly TraceRequest[];
  compress: number;
  /** performance.now() of trace ms 0. */
  startWall: number;
  timeoutMs: number;
}

export async function replayLoad(o: ReplayLoadOptions): Promise<LiveOutcome[]> {
  const openai = new OpenAI({ baseURL: o.baseURL, apiKey: 'unused', maxRetries: 0, timeout: o.timeoutMs });
  const one = async (r: TraceRequest, dueWall: number): Promise<LiveOutcome> => {
    const sent = performance.now();
    const base = { arrivalMs: r.arrivalMs, sendLagMs: sent - dueWall };
    let first: number | undefined;
    try {
      const stream = await openai.chat.completions.create({
        model: o.model,
        messages: [{ role: 'user', content: promptOf(r.promptTokens) }],
        max_tokens: r.outputTokens,
        stream: true,
      });
      for await (const chunk of stream) {
        if (first === undefined && chunk.choices[0]?.delta?.content) first = performance.now();
      }
      return { ...base, firstTokenWallMs: first === undefined ? undefined : first - sent, outcome: 'ok' };
    } catch (err) {
      const status = err instanceof OpenAI.APIError ? err.status : undefined;
      if (status === 429 || status === 503) {
        const retryAfter = Boolean((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after'));
        return { ...base, firstTokenWallMs: undefined, outcome: 'refused', retryAfter };
      }
      // A stream cut after its first token still had that token.
      const firstTokenWallMs = first === undefined ? undefined : first - sent;
      return { ...base, firstTokenWallMs, outcome: 'failed', error: String((err as Error).message) };
    }
  };
  const pending: Array<Promise<LiveOutcome>> = [];
  for (const r of o.requests) {
    const due = o.startWall + r.arrivalMs / o.compress;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(one(r, due));
  }
  return Promise.all(pending);
}
