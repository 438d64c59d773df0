/**
 * Reads one batch input line into the task it asks for, or the reason it
 * cannot run. Pure and shared: the planner counts with it, the bulk worker
 * runs with it, so both agree on which lines are bad and why.
 *
 * Speed: a bulk worker reads every line of a batch, so the usual shape (a
 * `/v1/infer` sentiment or summarize line) is recognised by hand first; any
 * other line, and every line with something wrong, goes through the zod
 * schemas, which therefore alone word every message.
 */
import {
  batchChatBodySchema,
  batchInferBodySchema,
  batchInputLineSchema,
  type BatchEndpoint,
} from '../contracts/batch.ts';
import { summarizeInputSchema, type TaskInput } from '../contracts/tasks.ts';
import { toChatInput } from '../contracts/api.ts';
import type { z } from 'zod';

export type ParsedLine =
  | { ok: true; customId: string; input: TaskInput }
  | { ok: false; customId: string | null; code: 'invalid_json' | 'invalid_request'; message: string };

function describe(error: z.ZodError, prefix: string): string {
  return error.issues.map((i) => `${[prefix, ...i.path].filter((p) => p !== '').join('.')}: ${i.message}`).join('; ');
}

interface Batch {
  endpoint: BatchEndpoint;
  model: string;
}

/** The schema's own default, read once. */
const DEFAULT_MAX_SENTENCES = summarizeInputSchema.parse({ task: 'summarize', text: '-' }).maxSentences;

/** What zod's z.object accepts as an object (JSON only makes plain ones). */
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The fast path: a `/v1/infer` line for the batch's model whose input is a
 * sentiment or summarize task, taken only when the schemas would surely
 * accept it and give this very result (same input keys in the same order,
 * the summarize default applied). It mirrors batchInputLineSchema,
 * batchInferBodySchema and the task input schemas: test/unit/bulk/
 * parse-line-fast-path.test.ts holds it to them line by line. Anything
 * else, valid or not, is undefined: the zod path decides it.
 */
function fastInferLine(json: unknown, batch: Batch): ParsedLine | undefined {
  if (batch.endpoint !== '/v1/infer' || !isObject(json)) return undefined;
  const { custom_id: customId, body } = json;
  if (typeof customId !== 'string' || customId.length < 1 || customId.length > 512) return undefined;
  if (json.method !== 'POST' || json.url !== '/v1/infer' || !isObject(body)) return undefined;
  if (body.model !== undefined && (body.model !== batch.model || batch.model === '')) return undefined;
  const input = body.input;
  if (!isObject(input) || typeof input.text !== 'string' || input.text.length < 1) return undefined;
  // A line naming a trained model is left to zod, which keeps (and checks) the name.
  if (input.task === 'sentiment' && input.model === undefined)
    return { ok: true, customId, input: { task: 'sentiment', text: input.text } };
  // An explicit maxSentences is left to zod: its bounds live in the schema alone.
  if (input.task !== 'summarize' || input.maxSentences !== undefined) return undefined;
  return { ok: true, customId, input: { task: 'summarize', text: input.text, maxSentences: DEFAULT_MAX_SENTENCES } };
}

function invalidJson(err: unknown): ParsedLine {
  return { ok: false, customId: null, code: 'invalid_json', message: `not valid JSON: ${(err as Error).message}` };
}

export function parseBatchLine(text: string, batch: Batch): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return invalidJson(err);
  }
  return fastInferLine(json, batch) ?? parseWithSchemas(json, batch);
}

/** parseBatchLine without the fast path: the reference its tests hold it to. */
export function parseBatchLineWithSchemas(text: string, batch: Batch): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return invalidJson(err);
  }
  return parseWithSchemas(json, batch);
}

/** The exact path, and the only one that words messages. */
function parseWithSchemas(json: unknown, batch: Batch): ParsedLine {
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
