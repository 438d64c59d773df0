/**
 * The sim backend's engine loop: one modelled GPU. Requests join a FIFO
 * queue; each step is planned by the pure scheduler (common/sim/sim-scheduler.ts), lasts
 * its modelled time (common/sim/sim-model.ts) scaled by `timeScale`, and at its end
 * every sequence in it advances: tokens are reported, finished requests
 * resolve. Requests that arrive during a step wait for the next one, as in a
 * real server. All callers of one engine contend for it.
 *
 * Steps run back to back on a schedule of their own: each starts at the
 * planned end of the one before, not when its timer happened to fire, so
 * timer lateness does not pile up; steps already due are run in one go.
 */
import { LLAMA2_70B_H100, type Calibration } from '../../common/sim/sim-model.ts';
import {
  applyPlan,
  isFinished,
  enqueue,
  newSeq,
  preemptForPriority,
  planStep,
  type SchedulerConfig,
  type SimSeq,
  type StepPlan,
} from '../../common/sim/sim-scheduler.ts';

export interface SimEngineOptions extends SchedulerConfig {
  /**
   * Wall time per unit of model time: 0.1 runs 10× faster than real time.
   * Latencies measured in wall time must be divided by it to get model time.
   * Node timers fire ≥ ~1 ms late, and that error is divided too: measured
   * here, a lone 512-token prompt's TTFT (86 ms model) read 99–101 ms at
   * 0.1 and 0.05, and 173 ms at 0.01, while total run time stayed within 3%.
   */
  timeScale: number;
  calibration?: Calibration;
  /** Wall clock in ms (injected for tests). */
  now?: () => number;
}

export interface SimRequest {
  promptTokens: number;
  outputTokens: number;
  /** Lower is admitted first (backend.ts REALTIME_PRIORITY, BULK_PRIORITY); FIFO within one. Default 0. */
  priority?: number;
  /** Called at the end of the step that produced output token `index` (0-based). */
  onToken?: (index: number) => void;
}

interface Entry {
  seq: SimSeq;
  req: SimRequest;
  resolve: () => void;
  reject: (reason: unknown) => void;
}

export class SimEngine {
  private readonly cfg: SchedulerConfig;
  private readonly cal: Calibration;
  private readonly timeScale: number;
  private readonly now: () => number;
  private readonly entries = new Map<number, Entry>();
  private running: SimSeq[] = [];
  private waiting: SimSeq[] = [];
  private step: { plan: StepPlan; endsAt: number; timer: NodeJS.Timeout } | undefined;
  private nextId = 0;
  private closed = false;

  constructor(opts: SimEngineOptions) {
    if (!(opts.timeScale > 0)) throw new RangeError(`timeScale must be > 0: ${opts.timeScale}`);
    const { maxNumSeqs, maxNumBatchedTokens, chunkedPrefill } = opts;
    this.cfg = { maxNumSeqs, maxNumBatchedTokens, chunkedPrefill };
    this.cal = opts.calibration ?? LLAMA2_70B_H100;
    this.timeScale = opts.timeScale;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Runs one request to its last token; rejects with the signal's reason when it aborts. */
  submit(req: SimRequest, signal: AbortSignal): Promise<void> {
    return this.submitAll([req], signal)[0]!;
  }

  /**
   * Queues requests in order (behind those already waiting at the same or a
   * higher priority, ahead of lower ones); one promise
   * each. When the signal aborts, those still in the engine leave it at once
   * and reject with the signal's reason.
   */
  submitAll(reqs: readonly SimRequest[], signal: AbortSignal): Array<Promise<void>> {
    if (this.closed) return reqs.map(() => Promise.reject(new Error('the sim engine is closed')));
    if (signal.aborted) {
      const reason: unknown = signal.reason;
      return reqs.map(async () => {
        throw reason;
      });
    }
    const ids: number[] = [];
    const promises = reqs.map(
      (req) =>
        new Promise<void>((resolve, reject) => {
          const seq = newSeq(this.nextId++, req.promptTokens, req.outputTokens, req.priority);
          ids.push(seq.id);
          this.entries.set(seq.id, { seq, req, resolve, reject });
          enqueue(this.waiting, seq);
        }),
    );
    // One listener for the lot (a listener per request would trip Node's leak warning).
    const onAbort = () => {
      for (const id of ids) this.settle(id, signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    void Promise.allSettled(promises).then(() => signal.removeEventListener('abort', onAbort));
    if (this.step === undefined) this.startStep(this.now());
    return promises;
  }

  /** Sequences admitted to the batch, and those still queued. */
  load(): { running: number; waiting: number } {
    return { running: this.running.length, waiting: this.waiting.length };
  }

  /** Stops the loop; requests still in it reject. */
  close(): void {
    this.closed = true;
    if (this.step !== undefined) clearTimeout(this.step.timer);
    this.step = undefined;
    for (const id of [...this.entries.keys()]) this.settle(id, new Error('the sim engine closed'));
  }

  /** Removes a request at once (finished, aborted or closed) and settles its promise. */
  private settle(id: number, error?: unknown): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.entries.delete(id);
    this.running = this.running.filter((s) => s.id !== id);
    this.waiting = this.waiting.filter((s) => s.id !== id);
    if (error === undefined) entry.resolve();
    else entry.reject(error);
  }

  private startStep(at: number): void {
    let startsAt = at;
    for (;;) {
      if (this.closed) return;
      preemptForPriority(this.running, this.waiting, this.cfg);
      const plan = planStep(this.running, this.waiting, this.cfg, this.cal);
      if (plan.items.length === 0) {
        this.step = undefined;
        return;
      }
      this.running.push(...this.waiting.splice(0, plan.admitted));
      const endsAt = startsAt + plan.ms * this.timeScale;
      const delay = endsAt - this.now();
      if (delay > 0) {
        this.step = { plan, endsAt, timer: setTimeout(() => this.endStep(), delay) };
        return;
      }
      // Already due (fast time scale, or a late timer): finish it now and plan the next.
      this.step = undefined;
      this.finish(plan);
      startsAt = endsAt;
    }
  }

  private endStep(): void {
    const step = this.step;
    if (step === undefined) return;
    this.step = undefined;
    this.finish(step.plan);
    this.startStep(step.endsAt);
  }

  private finish(plan: StepPlan): void {
    for (const seq of applyPlan(plan)) {
      const entry = this.entries.get(seq.id);
      if (entry === undefined) continue; // aborted during the step: its work is simply lost
      try {
        entry.req.onToken?.(seq.generated - 1);
      } catch (err) {
        this.settle(seq.id, err);
        continue;
      }
      if (isFinished(seq)) this.settle(seq.id);
    }
  }
}
