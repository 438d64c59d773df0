/**
 * The in-process ceiling for batch throughput: the most lines per second the
 * same model can get through the same JSONL file in one plain loop, with none
 * of the batch machinery around it. The batch benchmark compares the chunk
 * runner (and the fleet) against it.
 *
 * What one measured run includes, and nothing else:
 * - streaming the file from local disk (fs read stream, default 64 KiB reads)
 *   and splitting it at LF into lines (a CR before the LF dropped, blank
 *   lines skipped), each decoded as UTF-8;
 * - JSON.parse of every line, and taking `body.input` as the task input
 *   (a `/v1/infer` line, e.g. `{ task: 'sentiment', text }`), unvalidated;
 * - the backend's `runMany` over micro-batches of `batchSize` inputs (the
 *   runner's default, 64), awaited one after another;
 * - JSON.stringify of a minimal result per line (`{ custom_id, output }`, or
 *   `{ custom_id, error }` when the backend failed that input), kept only
 *   as a byte count.
 * Left out on purpose: zod validation, endpoint/model checks, duplicate
 * detection, byte ranges, line numbers, the OpenAI output envelope, part
 * files, storage writes and Redis. Creating the backend (model load) is not
 * timed. Lines that fail JSON.parse, or lack `body.input`, throw: the ceiling
 * is measured on well-formed input only.
 *
 * A fresh backend's first pass runs cold (JIT not yet optimised, model and
 * lexicon caches empty), which understates the ceiling a warm worker is
 * compared with: `createCeiling` makes one backend, runs an untimed warm-up
 * pass (`warmUpLines`, default 20,000) and then times passes on it.
 */
import { createReadStream } from 'node:fs';
import { parseConfig, type PoolConfig } from '../../common/config.ts';
import type { TaskInput } from '../../common/contracts/tasks.ts';
import type { ModelBackend } from '../../gpu-worker/backends/backend.ts';
import { createBackend } from '../../gpu-worker/backends/registry.ts';
import { DEFAULT_BATCH_SIZE } from '../../gpu-worker/bulk/micro-batch.ts';

export interface CeilingOptions {
  /** A local JSONL file of `/v1/infer` lines. */
  file: string;
  /** The backend to measure; default: a fresh embedded backend (created untimed, closed after). */
  backend?: ModelBackend;
  /** Inputs per runMany call (default: the bulk runner's, 64). */
  batchSize?: number;
  /** Stop after this many lines (default: the whole file). */
  maxLines?: number;
}

export interface CeilingResult {
  lines: number;
  seconds: number;
  linesPerSecond: number;
  /** This process's CPU time (user + system, all threads) over the pass: robust to other load on the core. */
  cpuSeconds: number;
  /** Bytes of serialised results (keeps the serialisation from being optimised away). */
  outputBytes: number;
}

const LF = 0x0a;
const CR = 0x0d;

/** Lines of a local file (LF, CRLF; blank lines skipped). */
async function* fileLines(file: string): AsyncGenerator<string> {
  let rest: Buffer | null = null;
  for await (const piece of createReadStream(file) as AsyncIterable<Buffer>) {
    const buf: Buffer = rest === null ? piece : Buffer.concat([rest, piece]);
    let from = 0;
    for (let at = buf.indexOf(LF); at !== -1; at = buf.indexOf(LF, from)) {
      const end = at > from && buf[at - 1] === CR ? at - 1 : at;
      if (end > from) yield buf.toString('utf8', from, end);
      from = at + 1;
    }
    rest = from < buf.length ? buf.subarray(from) : null;
  }
  if (rest !== null && rest.length > 0) yield rest.toString('utf8');
}

async function embeddedBackend(pool?: PoolConfig): Promise<ModelBackend> {
  const p = pool ?? parseConfig({}, 'pools: [{ name: ceiling, backend: embedded, defaultMaxTokens: 8 }]').pools[0]!;
  return createBackend(p, { concurrency: 1 });
}

/** One timed pass of the loop described in the module comment. */
export async function ceilingLinesPerSecond(opts: CeilingOptions): Promise<CeilingResult> {
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const backend = opts.backend ?? (await embeddedBackend());
  const runMany = backend.runMany?.bind(backend);
  if (runMany === undefined) throw new Error(`backend ${backend.kind} has no runMany: the ceiling needs one`);
  const signal = new AbortController().signal;
  try {
    let lines = 0;
    let outputBytes = 0;
    let ids: string[] = [];
    let inputs: TaskInput[] = [];
    const flush = async () => {
      const results = await runMany(inputs, { signal });
      for (let i = 0; i < results.length; i++) {
        const r = results[i]!;
        const out = r instanceof Error ? { custom_id: ids[i], error: r.message } : { custom_id: ids[i], output: r };
        outputBytes += JSON.stringify(out).length;
      }
      lines += results.length;
      ids = [];
      inputs = [];
    };
    const started = process.hrtime.bigint();
    const cpuStarted = process.cpuUsage();
    const maxLines = opts.maxLines ?? Infinity;
    let read = 0;
    for await (const text of fileLines(opts.file)) {
      if (read++ >= maxLines) break;
      const json = JSON.parse(text) as { custom_id: string; body: { input: TaskInput } };
      ids.push(json.custom_id);
      inputs.push(json.body.input);
      if (inputs.length === batchSize) await flush();
    }
    if (inputs.length > 0) await flush();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpuStarted);
    return { lines, seconds, linesPerSecond: lines / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, outputBytes };
  } finally {
    if (opts.backend === undefined) await backend.close();
  }
}

/** A warm ceiling: one backend, warmed up once, measured as often as asked. */
export interface Ceiling {
  /** One timed pass over `file` (the whole file unless `maxLines`). */
  measure(file: string, maxLines?: number): Promise<CeilingResult>;
  close(): Promise<void>;
}

/**
 * Creates the backend for `pool` (default: embedded) untimed, runs an untimed
 * warm-up pass over the first `warmUpLines` lines of `warmUpFile`, and returns
 * the warm backend's measurer.
 */
export async function createCeiling(opts: {
  warmUpFile: string;
  pool?: PoolConfig;
  warmUpLines?: number;
  batchSize?: number;
}): Promise<Ceiling> {
  const backend = await embeddedBackend(opts.pool);
  const { batchSize } = opts;
  await ceilingLinesPerSecond({ file: opts.warmUpFile, backend, batchSize, maxLines: opts.warmUpLines ?? 20_000 });
  return {
    measure: (file, maxLines) => ceilingLinesPerSecond({ file, backend, batchSize, maxLines }),
    close: () => backend.close(),
  };
}
