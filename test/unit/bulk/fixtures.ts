/** Builders shared by the bulk tests: JSONL inputs in a temp folder and chunk jobs over them. */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chunkJobSchema, partUris, type BatchEndpoint, type ChunkJob } from '../../../common/contracts/batch.ts';

export interface TempDir {
  path: string;
  uri: (name: string) => string;
  remove: () => Promise<void>;
}

export async function tempDir(): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), 'interfleet-bulk-'));
  return {
    path,
    uri: (name) => pathToFileURL(join(path, name)).href,
    remove: () => rm(path, { recursive: true, force: true }),
  };
}

/** A line of OpenAI's batch input format. */
export function inputLine(customId: string, body: Record<string, unknown>, url: BatchEndpoint = '/v1/infer'): string {
  return JSON.stringify({ custom_id: customId, method: 'POST', url, body });
}

export const sentimentLine = (customId: string, text: string): string =>
  inputLine(customId, { input: { task: 'sentiment', text } });

export interface WrittenInput {
  uri: string;
  /** Byte offset where each line starts, plus the object's size at the end. */
  offsets: number[];
}

/** Writes lines joined by `eol` (with a final eol) and records where each starts. */
export async function writeInput(
  dir: TempDir,
  name: string,
  lines: readonly string[],
  eol = '\n',
): Promise<WrittenInput> {
  const offsets: number[] = [];
  let at = 0;
  for (const line of lines) {
    offsets.push(at);
    at += Buffer.byteLength(line + eol);
  }
  offsets.push(at);
  await writeFile(join(dir.path, name), lines.map((l) => l + eol).join(''));
  return { uri: dir.uri(name), offsets };
}

/** A chunk job over lines [from, to) (0-based indexes into the written lines). */
export function chunkJob(
  dir: TempDir,
  input: WrittenInput,
  opts: {
    from?: number;
    to?: number;
    index?: number;
    endpoint?: BatchEndpoint;
    model?: string;
    duplicateLines?: number[];
    batchId?: string;
  } = {},
): ChunkJob {
  const from = opts.from ?? 0;
  const to = opts.to ?? input.offsets.length - 1;
  const index = opts.index ?? 0;
  return chunkJobSchema.parse({
    batchId: opts.batchId ?? 'b1',
    endpoint: opts.endpoint ?? '/v1/infer',
    model: opts.model ?? 'test',
    chunk: {
      index,
      input: input.uri,
      start: input.offsets[from],
      end: input.offsets[to],
      firstLine: from + 1,
      lines: to - from,
      duplicateLines: opts.duplicateLines ?? [],
    },
    ...partUris(dir.uri('parts'), index),
  });
}

/** A part's JSON lines, or null when it does not exist. */
export async function readPart(uri: string): Promise<unknown[] | null> {
  const path = new URL(uri).pathname;
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return null;
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);
}

export async function exists(uri: string): Promise<boolean> {
  return stat(new URL(uri).pathname).then(
    () => true,
    () => false,
  );
}
