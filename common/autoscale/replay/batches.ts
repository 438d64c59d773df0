/**
 * Batches for the replay (`interfleet autoscale simulate --batches <file>`):
 * YAML or JSON, either a list of batches or a mapping with the bulk record's
 * token shape and the list:
 *
 *   record: { promptTokens: 512, outputTokens: 128 }   # optional, this default
 *   batches:
 *     - { id: nightly, records: 20000, arrivalS: 0, windowS: 2700 }
 *
 * Times are seconds of the replay clock (after --compress) from the trace's
 * first arrival; a batch's deadline is `arrivalS + windowS` (its completion
 * window). Every problem comes back at once with its path.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export interface ReplayBatch {
  id: string;
  records: number;
  /** Replay ms from the start when it is submitted. */
  arrivalMs: number;
  /** Replay ms from the start by which it must be done. */
  deadlineMs: number;
}

export interface BatchSet {
  record: { promptTokens: number; outputTokens: number };
  batches: ReplayBatch[];
}

export const DEFAULT_RECORD = { promptTokens: 512, outputTokens: 128 } as const;

const batchSchema = z.object({
  id: z.string().min(1).max(128),
  records: z.number().int().min(1),
  arrivalS: z.number().min(0),
  windowS: z.number().gt(0),
});
const recordSchema = z.object({
  promptTokens: z.number().int().min(1),
  outputTokens: z.number().int().min(1),
});
const fileSchema = z.union([
  z.array(batchSchema),
  z.object({ record: recordSchema.default(DEFAULT_RECORD), batches: z.array(batchSchema) }).strict(),
]);

export class BatchFileError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid batches:\n  - ${issues.join('\n  - ')}`);
    this.name = 'BatchFileError';
  }
}

/** Parses a batches file's text (YAML is a superset of JSON); throws BatchFileError with every problem. */
export function parseBatches(text: string, source = 'batches'): BatchSet {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new BatchFileError([`${source}: not YAML or JSON: ${(err as Error).message}`]);
  }
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) {
    // A union reports its branches' issues; show the branch the document was meant for.
    const issues = parsed.error.issues.flatMap((i) =>
      i.code === 'invalid_union'
        ? (i.errors[Array.isArray(doc) ? 0 : 1] ?? i.errors.flat()).map((e) => ({
            ...e,
            path: [...i.path, ...e.path],
          }))
        : [i],
    );
    throw new BatchFileError(issues.map((i) => `${source}: ${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const data = Array.isArray(parsed.data) ? { record: DEFAULT_RECORD, batches: parsed.data } : parsed.data;
  const seen = new Set<string>();
  const dup = data.batches.filter((b) => (seen.has(b.id) ? true : (seen.add(b.id), false))).map((b) => b.id);
  if (dup.length > 0) throw new BatchFileError([`${source}: batch ids must be unique: ${dup.join(', ')}`]);
  return {
    record: { ...data.record },
    batches: data.batches.map((b) => ({
      id: b.id,
      records: b.records,
      arrivalMs: Math.round(b.arrivalS * 1000),
      deadlineMs: Math.round((b.arrivalS + b.windowS) * 1000),
    })),
  };
}
