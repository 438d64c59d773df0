/**
 * The steady load every chaos row holds while its fault is injected, all three kinds of work
 * through the real HTTP API: real-time chats at a fixed rate, batches of chat lines (file://
 * JSONL in the row's workDir), one `rounds` training job (test/fixtures/training-counter.mjs,
 * whose round-r model is w = r exactly when each round was reduced once from the one before),
 * and optionally a trickle of small batches created all along (the acknowledged submissions
 * a Redis restart must keep).
 *
 * `settle` waits for every accepted piece to end and counts, from the producer's answers and
 * the final states and files:
 * - lost: a real-time request that got no answer at all (a hang past its deadline + margin); a
 *   batch line in neither the output nor the error file of a final batch, or every line of a batch
 *   that never ended; a training job that never ended.
 * - duplicated: a custom_id in the output and error files more than once; a training (round,
 *   rank) record or round model listed twice, or a round's model not w = r (reduced twice, or
 *   from a wrong start).
 * A request refused (429/503) or failed with an error body was answered: visible, not lost.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { POOL, type ChaosFleet } from './fleet.ts';
import type { ChaosEnv } from './types.ts';

const counterFixture = resolve(import.meta.dirname, '../fixtures/training-counter.mjs');

export interface LoadOptions {
  rtPerSecond?: number;
  batches?: number;
  linesPerBatch?: number;
  /** Tokens each batch line generates (the sim backend's time per line). */
  lineTokens?: number;
  training?: { ranks: number; rounds: number; sleepMs: number } | false;
  /** A small batch (`lines` lines) created every `everyMs` until `stopSubmitting`. */
  trickle?: { everyMs: number; lines: number };
  /** Per batch index: custom_id prefixes of lines a row's test backend reacts to. */
  poisonLines?: Record<number, string[]>;
}

export interface RtOutcome {
  sentAt: number;
  ms: number;
  /** HTTP status; 0: no connection; -1: no answer within the hang margin. */
  status: number;
  retryAfter: string | null;
}

export interface BatchRecord {
  id: string;
  lines: string[];
  status?: string;
  errors?: unknown;
  outputIds?: string[];
  errorLines?: { custom_id: string | null; error: { code: string; message: string } | null }[];
}

export interface TrainingJob {
  id: string;
  status: string;
  round: number;
  error: string | null;
  restarts: number;
  models: { round: number; uri: string }[];
  ranks: { round: number; rank: number; status: string; worker: string; attempts?: number }[];
  [key: string]: unknown;
}

export interface Tally {
  lost: number;
  duplicated: number;
  rt: { sent: number; ok: number; refused: number; failed: number; noConnection: number; hung: number };
  batches: BatchRecord[];
  training?: TrainingJob;
  /** One line: what the load did. */
  summary: string;
}

const HANG_MARGIN_MS = 15_000;

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json().catch(() => ({}))) as Record<string, unknown>;
}

export class SteadyLoad {
  readonly rt: RtOutcome[] = [];
  readonly batches: BatchRecord[] = [];
  /** Submissions the producer refused (status, body), batches and training alike. */
  readonly refusedSubmits: { status: number; body: string }[] = [];
  /** Every batch submission's answer (status 0: none), timed like the real-time requests. */
  readonly submits: RtOutcome[] = [];
  trainingId?: string;
  private rtTimer?: NodeJS.Timeout;
  private trickleTimer?: NodeJS.Timeout;
  private readonly inFlight = new Set<Promise<unknown>>();
  private batchNo = 0;

  private constructor(
    private readonly fleet: ChaosFleet,
    private readonly env: ChaosEnv,
    readonly opts: Required<Omit<LoadOptions, 'trickle' | 'poisonLines'>> &
      Pick<LoadOptions, 'trickle' | 'poisonLines'>,
  ) {}

  static async start(fleet: ChaosFleet, env: ChaosEnv, options: LoadOptions = {}): Promise<SteadyLoad> {
    const load = new SteadyLoad(fleet, env, {
      rtPerSecond: 4,
      batches: 2,
      linesPerBatch: env.mode === 'short' ? 96 : 160,
      lineTokens: 24,
      training: { ranks: 2, rounds: 3, sleepMs: 1500 },
      ...options,
    });
    // The opening batches are submitted as a client that honours Retry-After would (for up to 30 s):
    // a producer that answers 429/503 for a moment on a loaded machine must not leave a row without
    // its load. Each refusal is still recorded in refusedSubmits.
    const retryUntil = Date.now() + 30_000;
    load.batchNo = load.opts.batches;
    for (let i = 0; i < load.opts.batches; i++) {
      while (
        !(await load.createBatch(load.opts.linesPerBatch, load.opts.poisonLines?.[i], i)) &&
        Date.now() < retryUntil
      ) {
        const last = load.submits.at(-1);
        await new Promise((r) => setTimeout(r, Math.max(200, Number(last?.retryAfter ?? 1) * 1000)));
      }
    }
    if (load.opts.training) await load.submitTraining(load.opts.training);
    load.rtTimer = setInterval(() => load.track(load.sendRt()), 1000 / load.opts.rtPerSecond);
    if (load.opts.trickle) {
      const { everyMs, lines } = load.opts.trickle;
      load.trickleTimer = setInterval(() => load.track(load.createBatch(lines)), everyMs);
    }
    return load;
  }

  describe(): string {
    const o = this.opts;
    return [
      `rt ${o.rtPerSecond} req/s`,
      `${o.batches} batches × ${o.linesPerBatch} lines`,
      o.training ? `1 training job (${o.training.ranks} ranks × ${o.training.rounds} rounds)` : '',
      o.trickle ? `+1 batch of ${o.trickle.lines} lines every ${o.trickle.everyMs / 1000} s` : '',
    ]
      .filter(Boolean)
      .join(', ');
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((err: unknown) => this.env.log(`load: ${String(err)}`));
    this.inFlight.add(q);
    void q.finally(() => this.inFlight.delete(q));
  }

  /** Real-time requests sent since `since` (ms epoch). */
  rtSince(since: number, until = Infinity): RtOutcome[] {
    return this.rt.filter((r) => r.sentAt >= since && r.sentAt < until);
  }

  private async sendRt(): Promise<void> {
    const sentAt = Date.now();
    const t0 = performance.now();
    const outcome: RtOutcome = { sentAt, ms: 0, status: 0, retryAfter: null };
    this.rt.push(outcome);
    try {
      const res = await fetch(`${this.fleet.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: POOL,
          messages: [{ role: 'user', content: 'Once upon a time' }],
          max_tokens: 32,
        }),
        signal: AbortSignal.timeout(10_000 + HANG_MARGIN_MS),
      });
      await res.arrayBuffer();
      outcome.status = res.status;
      outcome.retryAfter = res.headers.get('retry-after');
    } catch (err) {
      outcome.status = (err as Error).name === 'TimeoutError' ? -1 : 0;
    }
    outcome.ms = performance.now() - t0;
  }

  /** Submits a batch of `lines` lines (number `n`: its custom_ids and input file); true when accepted. */
  async createBatch(lines: number, poison: string[] = [], n = this.batchNo++): Promise<boolean> {
    const ids = Array.from({ length: lines }, (_, i) => `b${n}-${i}`);
    poison.forEach((p, i) => (ids[Math.min(ids.length - 1, 3 + i * 5)] = `${p}-${n}-${i}`));
    const input = join(this.env.workDir, `batch-${n}.jsonl`);
    const body = (id: string): string =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/chat/completions',
        body: {
          model: POOL,
          messages: [{ role: 'user', content: `${id} tell a story` }],
          max_tokens: this.opts.lineTokens,
        },
      });
    writeFileSync(input, ids.map(body).join('\n') + '\n');
    const submit: RtOutcome = { sentAt: Date.now(), ms: 0, status: 0, retryAfter: null };
    this.submits.push(submit);
    const t0 = performance.now();
    const res = await fetch(`${this.fleet.url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        input_file: pathToFileURL(input).href,
        endpoint: '/v1/chat/completions',
        model: POOL,
        completion_window: '24h',
      }),
      signal: AbortSignal.timeout(10_000),
    }).catch(() => undefined);
    submit.ms = performance.now() - t0;
    if (!res) {
      this.refusedSubmits.push({ status: 0, body: 'no answer' });
      return false;
    }
    submit.status = res.status;
    submit.retryAfter = res.headers.get('retry-after');
    const answer = await json(res);
    if (res.status === 200 || res.status === 201 || res.status === 202) {
      this.batches.push({ id: answer.id as string, lines: ids });
      return true;
    }
    this.refusedSubmits.push({ status: res.status, body: JSON.stringify(answer).slice(0, 200) });
    return false;
  }

  private async submitTraining(t: { ranks: number; rounds: number; sleepMs: number }): Promise<void> {
    const res = await fetch(`${this.fleet.url}/v1/training/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        pool: POOL,
        command: process.execPath,
        args: [counterFixture],
        data_uri: `${pathToFileURL(join(this.env.workDir, 'unused')).href}/`,
        shard: 'none',
        mode: 'rounds',
        workers: t.ranks,
        rounds: t.rounds,
        checkpoint_uri: `${pathToFileURL(join(this.env.workDir, 'ckpt')).href}/`,
        params: { sleepMs: t.sleepMs },
      }),
    });
    const answer = await json(res);
    if (res.status !== 200) throw new Error(`training job refused: ${res.status} ${JSON.stringify(answer)}`);
    this.trainingId = answer.id as string;
  }

  async training(): Promise<TrainingJob | undefined> {
    if (!this.trainingId) return undefined;
    const res = await fetch(`${this.fleet.url}/v1/training/jobs/${this.trainingId}`).catch(() => undefined);
    return res?.ok ? ((await res.json()) as TrainingJob) : undefined;
  }

  async batch(id: string): Promise<Record<string, unknown> | undefined> {
    const res = await fetch(`${this.fleet.url}/v1/batches/${id}`).catch(() => undefined);
    return res?.ok ? json(res) : undefined;
  }

  stopRt(): void {
    clearInterval(this.rtTimer);
  }

  stopSubmitting(): void {
    clearInterval(this.trickleTimer);
  }

  /**
   * Stops new batches, waits (at most `timeoutMs`) for every accepted piece to end while the
   * real-time load goes on, then stops it and counts.
   */
  async settle(timeoutMs: number): Promise<Tally> {
    this.stopSubmitting();
    const deadline = Date.now() + timeoutMs;
    const finalBatch = ['completed', 'failed', 'expired', 'cancelled'];
    let job: TrainingJob | undefined;
    for (;;) {
      for (const b of this.batches.filter((x) => !x.status || !finalBatch.includes(x.status))) {
        const got = await this.batch(b.id);
        if (got && finalBatch.includes(got.status as string)) {
          b.status = got.status as string;
          b.errors = got.errors;
          const read = (uri: unknown): Record<string, unknown>[] =>
            typeof uri === 'string' && uri.startsWith('file:')
              ? readFileSync(fileURLToPath(uri), 'utf8')
                  .split('\n')
                  .filter(Boolean)
                  .map((l) => JSON.parse(l) as Record<string, unknown>)
              : [];
          b.outputIds = read(got.output_file).map((l) => l.custom_id as string);
          b.errorLines = read(got.error_file) as BatchRecord['errorLines'];
        }
      }
      job = this.trainingId ? await this.training() : undefined;
      const trainingDone = !this.trainingId || (job && ['succeeded', 'failed', 'cancelled'].includes(job.status));
      if ((this.batches.every((b) => b.status) && trainingDone) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    this.stopRt();
    await Promise.all(this.inFlight);
    return this.count(job);
  }

  private count(job: TrainingJob | undefined): Tally {
    const rt = {
      sent: this.rt.length,
      ok: this.rt.filter((r) => r.status >= 200 && r.status < 300).length,
      refused: this.rt.filter((r) => r.status === 429 || r.status === 503).length,
      failed: this.rt.filter((r) => r.status >= 400 && r.status !== 429 && r.status !== 503).length,
      noConnection: this.rt.filter((r) => r.status === 0).length,
      hung: this.rt.filter((r) => r.status === -1).length,
    };
    let lost = rt.hung;
    let duplicated = 0;
    let lines = 0;
    let errorLines = 0;
    for (const b of this.batches) {
      lines += b.lines.length;
      if (!b.status) {
        lost += b.lines.length;
        continue;
      }
      const seen = new Map<string, number>();
      for (const id of [...(b.outputIds ?? []), ...(b.errorLines ?? []).map((e) => e.custom_id ?? '')]) {
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      errorLines += b.errorLines?.length ?? 0;
      duplicated += [...seen.values()].filter((n) => n > 1).reduce((s, n) => s + n - 1, 0);
      // A batch that failed as a whole (its input unreadable) says why in `errors`: visible, not lost.
      if (b.status === 'failed' && seen.size === 0 && b.errors) continue;
      lost += b.lines.filter((id) => !seen.has(id)).length;
    }
    let trainingWords = '';
    if (this.trainingId) {
      if (!job || !['succeeded', 'failed', 'cancelled'].includes(job.status)) lost += 1;
      else if (job.status !== 'succeeded' && !job.error) lost += 1;
      if (job) {
        const keys = job.ranks.map((r) => `${r.round}:${r.rank}`);
        duplicated += keys.length - new Set(keys).size;
        duplicated += job.models.length - new Set(job.models.map((m) => m.round)).size;
        if (job.status === 'succeeded') duplicated += this.wrongModels(job);
        trainingWords = `training ${job.status} (round ${job.round}, ${job.restarts} restarts${job.error ? `, ${job.error}` : ''})`;
      } else trainingWords = 'training job unreadable';
    }
    const byStatus = new Map<string, number>();
    for (const b of this.batches)
      byStatus.set(b.status ?? 'not final', (byStatus.get(b.status ?? 'not final') ?? 0) + 1);
    const batchWords = `${this.batches.length} batches (${[...byStatus].map(([s, n]) => `${n} ${s}`).join(', ')}), ${lines} lines, ${errorLines} error lines`;
    return {
      lost,
      duplicated,
      rt,
      batches: this.batches,
      ...(job ? { training: job } : {}),
      summary: `${
        this.refusedSubmits.length
          ? `submissions refused: ${this.refusedSubmits
              .slice(0, 2)
              .map((r) => `${r.status} ${r.body}`)
              .join('; ')}; `
          : ''
      }rt ${rt.ok}/${rt.sent} ok, ${rt.refused} refused, ${rt.failed} failed, ${rt.hung} hung; ${batchWords}; ${trainingWords}`,
    };
  }

  /** Rounds whose reduced model is not w = r: a round reduced twice or started from a wrong model. */
  private wrongModels(job: TrainingJob): number {
    let wrong = 0;
    for (const m of job.models) {
      try {
        const w = readFileSync(join(fileURLToPath(m.uri), 'w.f32')).readFloatLE(0);
        if (w !== m.round) wrong++;
      } catch {
        wrong++;
      }
    }
    return wrong;
  }
}
