/**
 * Reads one batch input line into the task it asks for, or the reason it
 * cannot run. Pure and shared: the planner counts with it, the bulk worker
 * runs with it, so both agree on which lines are bad and why.
 */
import {
  batchChatBodySchema,
  batchInferBodySchema,
  batchInputLineSchema,
  type BatchEndpoint,
} from '../contracts/batch.ts';
import type { TaskInput } from '../contracts/tasks.ts';
import { toChatInput } from '../contracts/api.ts';
import type { z } from 'zod';

export type ParsedLine =
  | { ok: true; customId: string; input: TaskInput }
  | { ok: false; customId: string | null; code: 'invalid_json' | 'invalid_request'; message: string };

function describe(error: z.ZodError, prefix: string): string {
  return error.issues.map((i) => `${[prefix, ...i.path].filter((p) => p !== '').join('.')}: ${i.message}`).join('; ');
}

export function parseBatchLine(text: string, batch: { endpoint: BatchEndpoint; model: string }): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, customId: null, code: 'invalid_json', message: `not valid JSON: ${(err as Error).message}` };
  }
  const line = batchInputLineSchema.safeParse(json);
  if (!line.success) {
    const id = (json as { custom_id?: unknown } | null)?.custom_id;
    return {
      ok: false,
      customId: typeof id === 'string' ? id : null,
      code: 'invalid_request',
      message: describe(line.error, ''),
    };
  }
  const { custom_id: customId, url, body } = line.data;
  if (url !== batch.endpoint) {
    return {
      ok: false,
      customId,
      code: 'invalid_request',
      message: `url ${url} differs from the batch endpoint ${batch.endpoint}`,
    };
  }
  if (typeof body.model === 'string' && body.model !== batch.model) {
    return {
      ok: false,
      customId,
      code: 'invalid_request',
      message: `body.model ${body.model} differs from the batch model ${batch.model}`,
    };
  }
  if (url === '/v1/infer') {
    const parsed = batchInferBodySchema.safeParse(body);
    if (!parsed.success)
      return { ok: false, customId, code: 'invalid_request', message: describe(parsed.error, 'body') };
    return { ok: true, customId, input: parsed.data.input };
  }
  const parsed = batchChatBodySchema.safeParse(body);
  if (!parsed.success) return { ok: false, customId, code: 'invalid_request', message: describe(parsed.error, 'body') };
  return { ok: true, customId, input: toChatInput(parsed.data) };
}
