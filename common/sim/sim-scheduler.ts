/**
 * The sim backend's scheduler: iteration-level scheduling as in Orca (Yu et
 * al., OSDI 2022) and vLLM (Kwon et al., SOSP 2023). Each step the engine
 * decides afresh which sequences run and with how many tokens, bounded by a
 * number of sequences (vLLM's max_num_seqs) and a token budget
 * (max_num_batched_tokens). Two policies:
 * - chunked prefill (Sarathi-Serve, Agrawal et al., OSDI 2024; vLLM V1):
 *   running sequences go first (one token per decode, the rest of a partial
 *   prompt), then waiting prompts are admitted in FIFO order, the last one
 *   possibly cut to the budget left. Decodes never stall.
 * - no chunking (vLLM V0's default): if the head of the queue can be
 *   admitted, the step is prefill-only (whole prompts, FIFO, while they fit
 *   the budget; a prompt larger than the budget runs alone) and running
 *   decodes wait: the generation stalls of Sarathi-Serve's Figure 1.
 * KV-cache capacity and preemption are not modelled.
 *
 * Everything here is pure (planStep) or touches only the sequences it is
 * given (applyPlan, simulate); the timer-driven engine is
 * gpu-worker/backends/sim-engine.ts. It lives in common/ because the
 * scheduler's autoscaling replay (common/autoscale/replay/) models the
 * same engine.
 */
import { LLAMA2_70B_H100, stepTimeMs, type Calibration } from './sim-model.ts';

export interface SchedulerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  chunkedPrefill: boolean;
}

/** One request in the engine. `prefilled` and `generated` advance as steps run. */
export interface SimSeq {
  readonly id: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  /** Lower is admitted first; FIFO within a priority (vLLM's priority scheduling). */
  readonly priority: number;
  prefilled: number;
  generated: number;
}

export interface StepPlan {
  /** Sequences in this step, with the tokens each processes. */
  readonly items: ReadonlyArray<{ seq: SimSeq; tokens: number }>;
  /** How many sequences from the head of the waiting queue join the running set. */
  readonly admitted: number;
  readonly prefillTokens: number;
  readonly decodeSeqs: number;
  /** Model time of the step (sim-model.ts). */
  readonly ms: number;
}

export function newSeq(id: number, promptTokens: number, outputTokens: number, priority = 0): SimSeq {
  return {
    id,
    promptTokens: Math.max(1, promptTokens),
    outputTokens: Math.max(1, outputTokens),
    priority,
    prefilled: 0,
    generated: 0,
  };
}

/**
 * Puts `seq` in the waiting queue in (priority, arrival) order, as vLLM's
 * priority queue does: behind every sequence of a higher priority (a lower
 * number) or of the same one that came earlier (ids rise with arrival), so a
 * preempted sequence goes back ahead of later arrivals of its rank.
 */
export function enqueue(waiting: SimSeq[], seq: SimSeq): void {
  let at = waiting.length;
  const after = (w: SimSeq): boolean => w.priority > seq.priority || (w.priority === seq.priority && w.id > seq.id);
  while (at > 0 && after(waiting[at - 1]!)) at--;
  waiting.splice(at, 0, seq);
}

/**
 * vLLM's priority policy when the batch is full: waiting sequences that
 * outrank running ones take their places, the lowest-ranked running sequence
 * (the latest admitted among equals) being preempted by recomputation: it
 * goes back to the waiting queue, keeps the tokens it generated, and its
 * prompt is prefilled again when it is readmitted (the recomputation of its
 * generated tokens is not charged: a small undercount). Mutates both arrays;
 * returns how many were preempted. Called before planStep.
 */
export function preemptForPriority(running: SimSeq[], waiting: SimSeq[], cfg: SchedulerConfig): number {
  let preempted = 0;
  for (const head of [...waiting]) {
    if (running.length < cfg.maxNumSeqs) break;
    let victim = -1;
    for (let i = running.length - 1; i >= 0; i--) {
      const p = running[i]!.priority;
      if (p > head.priority && (victim < 0 || p > running[victim]!.priority)) victim = i;
    }
    if (victim < 0) break; // nothing running ranks below the head: it waits its turn
    const [seq] = running.splice(victim, 1);
    seq!.prefilled = 0;
    enqueue(waiting, seq!);
    preempted++;
  }
  return preempted;
}

const isDecoding = (s: SimSeq): boolean => s.prefilled >= s.promptTokens;

/** Decides the next step from the running set and the FIFO waiting queue. */
export function planStep(
  running: readonly SimSeq[],
  waiting: readonly SimSeq[],
  cfg: SchedulerConfig,
  cal: Calibration = LLAMA2_70B_H100,
): StepPlan {
  const items: Array<{ seq: SimSeq; tokens: number }> = [];
  let budget = cfg.maxNumBatchedTokens;
  let admitted = 0;
  const room = Math.max(0, cfg.maxNumSeqs - running.length);

  if (cfg.chunkedPrefill) {
    for (const seq of running) {
      if (budget <= 0) break;
      const tokens = isDecoding(seq) ? 1 : Math.min(seq.promptTokens - seq.prefilled, budget);
      items.push({ seq, tokens });
      budget -= tokens;
    }
    while (admitted < Math.min(room, waiting.length) && budget > 0) {
      const seq = waiting[admitted]!;
      const tokens = Math.min(seq.promptTokens - seq.prefilled, budget);
      items.push({ seq, tokens });
      budget -= tokens;
      admitted++;
    }
  } else {
    while (admitted < Math.min(room, waiting.length)) {
      const seq = waiting[admitted]!;
      const tokens = seq.promptTokens - seq.prefilled;
      if (tokens > budget && admitted > 0) break;
      items.push({ seq, tokens });
      budget -= tokens;
      admitted++;
    }
    if (admitted === 0) for (const seq of running) items.push({ seq, tokens: 1 });
  }

  let prefillTokens = 0;
  let decodeSeqs = 0;
  for (const { seq, tokens } of items) {
    if (isDecoding(seq)) decodeSeqs++;
    else prefillTokens += tokens;
  }
  return { items, admitted, prefillTokens, decodeSeqs, ms: stepTimeMs({ prefillTokens, decodeSeqs }, cal) };
}

/**
 * Advances the planned sequences by one step. The step that completes a
 * prompt also samples its first output token (as vLLM does), so TTFT is the
 * end of the last prefill step. Returns the sequences that produced a token.
 */
export function applyPlan(plan: StepPlan): SimSeq[] {
  const produced: SimSeq[] = [];
  for (const { seq, tokens } of plan.items) {
    if (isDecoding(seq)) {
      seq.generated++;
      produced.push(seq);
    } else {
      seq.prefilled += tokens;
      if (isDecoding(seq)) {
        // The step that completes a prefill yields the next token (the first, or the next after a
        // preemption's recomputation).
        seq.generated++;
        produced.push(seq);
      }
    }
  }
  return produced;
}

export const isFinished = (s: SimSeq): boolean => s.generated >= s.outputTokens;

export interface TraceRequest {
  arrivalMs: number;
  promptTokens: number;
  outputTokens: number;
  /** Lower is admitted first (default 0). */
  priority?: number;
}

export interface TraceResult {
  /** Arrival to first token, model ms. */
  ttftMs: number;
  /** Mean time between later tokens, model ms (0 for a single-token answer). */
  tbtMs: number;
  finishMs: number;
}

/**
 * Discrete-event replay of requests through the scheduler, in model time and
 * without timers: for tests, and for benchmarks that want the model alone.
 * Results are in request order.
 */
export function simulate(
  requests: readonly TraceRequest[],
  cfg: SchedulerConfig,
  cal: Calibration = LLAMA2_70B_H100,
): TraceResult[] {
  const order = requests.map((r, i) => ({ r, i })).sort((a, b) => a.r.arrivalMs - b.r.arrivalMs || a.i - b.i);
  // Sequence ids follow arrival (the waiting queue orders by them); seqs[i] serves requests[i].
  const seqs = new Array<SimSeq>(requests.length);
  order.forEach(({ r, i }, k) => (seqs[i] = newSeq(k, r.promptTokens, r.outputTokens, r.priority)));
  const requestOf = order.map(({ i }) => i);
  const firstAt = new Array<number>(requests.length).fill(NaN);
  const results = new Array<TraceResult>(requests.length);
  let running: SimSeq[] = [];
  const waiting: SimSeq[] = [];
  let next = 0;
  let now = 0;
  while (next < order.length || running.length > 0 || waiting.length > 0) {
    while (next < order.length && order[next]!.r.arrivalMs <= now) enqueue(waiting, seqs[order[next++]!.i]!);
    preemptForPriority(running, waiting, cfg);
    const plan = planStep(running, waiting, cfg, cal);
    if (plan.items.length === 0) {
      now = order[next]!.r.arrivalMs;
      continue;
    }
    running.push(...waiting.splice(0, plan.admitted));
    now += plan.ms;
    for (const seq of applyPlan(plan)) {
      const i = requestOf[seq.id]!;
      if (seq.generated === 1) firstAt[i] = now;
      if (!isFinished(seq)) continue;
      const ttftMs = firstAt[i]! - requests[i]!.arrivalMs;
      const tbtMs = seq.outputTokens > 1 ? (now - firstAt[i]!) / (seq.outputTokens - 1) : 0;
      results[i] = { ttftMs, tbtMs, finishMs: now };
    }
    running = running.filter((s) => !isFinished(s));
  }
  return results;
}
