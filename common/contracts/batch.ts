/**
 * Batch inference contracts, shaped like OpenAI's Batch API so existing
 * tooling fits: input and output lines, and the chunk job that carries a
 * byte range of an input object (never the data itself: principle 1).
 */
import { z } from 'zod';
import { objectUriSchema } from '../storage/uri.ts';
import { chatCompletionRequestSchema } from './api.ts';
import { sentimentInputSchema, summarizeInputSchema, chatInputSchema } from './tasks.ts';

export const batchEndpoints = ['/v1/chat/completions', '/v1/infer'] as const;
export type BatchEndpoint = (typeof batchEndpoints)[number];

/** One input line. `body.model`, when present, must name the batch's model. */
export const batchInputLineSchema = z.object({
  custom_id: z.string().min(1, 'custom_id must not be empty').max(512),
  method: z.literal('POST', { error: 'method must be POST' }),
  url: z.enum(batchEndpoints, { error: `url must be one of ${batchEndpoints.join(', ')}` }),
  body: z.record(z.string(), z.unknown()),
});
export type BatchInputLine = z.infer<typeof batchInputLineSchema>;

/** The body of a `/v1/chat/completions` line (model optional: the batch names it). */
export const batchChatBodySchema = chatCompletionRequestSchema.extend({
  model: z.string().min(1).optional(),
  stream: z.literal(false, { error: 'stream is not supported in a batch' }).nullish(),
});

/** The body of a `/v1/infer` line: a task input, as in the native API. */
export const batchInferBodySchema = z.object({
  model: z.string().min(1).optional(),
  input: z.discriminatedUnion('task', [chatInputSchema, sentimentInputSchema, summarizeInputSchema]),
});

/** One output line (OpenAI's batch output format). Exactly one of response / error is set. */
export const batchOutputLineSchema = z.object({
  id: z.string(),
  custom_id: z.string(),
  response: z.object({ status_code: z.number().int(), request_id: z.string(), body: z.unknown() }).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
export type BatchOutputLine = z.infer<typeof batchOutputLineSchema>;

/**
 * An error-file line for an input line that could not be run: its 1-based
 * line number in the input object `input` (a batch may read several), and why.
 */
export const batchErrorLineSchema = z.object({
  line: z.number().int().min(1),
  input: objectUriSchema,
  custom_id: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string() }),
});
export type BatchErrorLine = z.infer<typeof batchErrorLineSchema>;

/**
 * The stem of the ids of a chunk's results. Line numbers restart in each input
 * object of a multi-object batch, so the chunk index (unique in the batch)
 * comes with the line: (chunk, line) names one input line.
 */
export const batchRecordStem = (batchId: string, chunkIndex: number): string => `${batchId}_${chunkIndex}`;

/** Deterministic id of an input line's result: a re-run (worker or finalisation) produces the same one. */
export const batchRequestId = (batchId: string, chunkIndex: number, line: number): string =>
  `batch_req_${batchRecordStem(batchId, chunkIndex)}_${line}`;

/**
 * An error-file line, serialised: `batchErrorLineSchema` (line number and
 * reason) and, with a custom_id, OpenAI's error-file line too. Workers write
 * it for lines that failed, finalisation for lines that never ran: one format.
 */
export function batchErrorLineJson(
  batchId: string,
  chunk: Pick<Chunk, 'index' | 'input'>,
  line: number,
  customId: string | null,
  error: { code: string; message: string },
): string {
  return JSON.stringify({
    id: batchRequestId(batchId, chunk.index, line),
    custom_id: customId,
    line,
    input: chunk.input,
    response: null,
    error,
  });
}

/** A chunk: a byte range of one input object, cut on line boundaries. `end` is exclusive. */
export const chunkSchema = z.object({
  index: z.number().int().min(0),
  input: objectUriSchema,
  start: z.number().int().min(0),
  end: z.number().int().min(0),
  /** 1-based number of the chunk's first line within its input object. */
  firstLine: z.number().int().min(1),
  lines: z.number().int().min(0),
  /**
   * Lines (1-based, in the input object) whose custom_id repeats an earlier
   * one. Only the planner sees the whole input; the worker reports these as
   * duplicates instead of running them.
   */
  duplicateLines: z.array(z.number().int().min(1)).max(10_000).default([]),
});
export type Chunk = z.infer<typeof chunkSchema>;

/**
 * A finished prefix of a chunk that yielded (preemption, drain): the byte
 * range `[start, end)` of its input, written as its own output and error
 * parts (segmentPartUris). The rest of the chunk resumes at `end`, line
 * `nextLine`.
 */
export const chunkSegmentSchema = z.object({
  start: z.number().int().min(0),
  end: z.number().int().min(0),
  /** Number of the line that starts at `end` (the first line the segment did not finish). */
  nextLine: z.number().int().min(1),
  /** Non-blank lines the segment handled (= completed + failed). */
  lines: z.number().int().min(0),
  completed: z.number().int().min(0),
  failed: z.number().int().min(0),
});
export type ChunkSegment = z.infer<typeof chunkSegmentSchema>;

/** The job on `bulk.<pool>`: one chunk of one batch. */
export const chunkJobSchema = z.object({
  batchId: z.string().min(1),
  endpoint: z.enum(batchEndpoints),
  model: z.string().min(1),
  /** The range still to run: the planned chunk, or what follows its finished segments. */
  chunk: chunkSchema,
  /** Where this chunk's parts go; names are deterministic from the chunk index. */
  outputPart: objectUriSchema,
  errorPart: objectUriSchema,
  /**
   * Finished segments, in order, when the chunk yielded before (a copy of the
   * batch's record, which is the one that counts: BatchStore.chunkSegments).
   * `chunk` then starts where the last one ends.
   */
  segments: z.array(chunkSegmentSchema).max(10_000).optional(),
});
export type ChunkJob = z.infer<typeof chunkJobSchema>;

/** Deterministic part names: a re-run chunk writes the same names, create-only. */
export function partUris(partsPrefix: string, index: number): { outputPart: string; errorPart: string } {
  const n = String(index).padStart(8, '0');
  const base = partsPrefix.endsWith('/') ? partsPrefix : `${partsPrefix}/`;
  return { outputPart: `${base}output-${n}.jsonl`, errorPart: `${base}error-${n}.jsonl` };
}

/**
 * The parts of one segment of a chunk, `[start, end)` of its input: the
 * chunk's part names with the byte range before `.jsonl`
 * (`parts/output-00000012-<start>-<end>.jsonl`). A resumed chunk's last part
 * is named this way too, so that no run over another range can claim a name.
 */
export function segmentPartUris(
  parts: { outputPart: string; errorPart: string },
  start: number,
  end: number,
): { outputPart: string; errorPart: string } {
  const ranged = (uri: string): string => `${uri.replace(/\.jsonl$/, '')}-${start}-${end}.jsonl`;
  return { outputPart: ranged(parts.outputPart), errorPart: ranged(parts.errorPart) };
}

/** Jobs on the batch control queue (topology.batchControlQueue), run by producer replicas. */
export const controlJobSchema = z.discriminatedUnion('kind', [
  /** Stream the input once, write the plan, move the batch to in_progress (or failed). */
  z.object({ kind: z.literal('plan'), batchId: z.string().min(1) }),
  /** Merge the parts into the output and error files, write the manifest, end the batch. */
  z.object({ kind: z.literal('finalize'), batchId: z.string().min(1) }),
  /** A cron trigger fired: create the batch its schedule describes (BullMQ job scheduler). */
  z.object({ kind: z.literal('cron'), schedule: z.string().min(1) }),
]);
export type ControlJob = z.infer<typeof controlJobSchema>;

/** Job ids on the control queue: one plan and one finalisation per batch at a time. */
export const controlJobId = {
  plan: (batchId: string): string => `plan-${batchId}`,
  finalize: (batchId: string): string => `finalize-${batchId}`,
};
