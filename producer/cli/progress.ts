/**
 * The live progress of a batch as the CLI shows it: a rate over the last
 * polls, an ETA, and one line of text. Pure (the clock comes in with each
 * sample) so that the arithmetic is tested without waiting.
 */
import type { ApiBatch } from '../../common/contracts/batch-api.ts';

/** Polls older than this drop out of the rate, so it follows the batch's current pace. */
const RATE_WINDOW_MS = 30_000;

interface Sample {
  at: number;
  lines: number;
}

export interface ProgressSnapshot {
  status: ApiBatch['status'];
  linesDone: number;
  /** 0 until planning has counted the input. */
  total: number;
  chunksDone: number;
  chunksTotal: number;
  /** Lines per second over the recent polls; undefined until two polls apart in time. */
  rate: number | undefined;
  /** Milliseconds left at that rate; undefined when unknown. */
  etaMs: number | undefined;
}

export class ProgressMeter {
  private samples: Sample[] = [];

  update(batch: ApiBatch, at: number): ProgressSnapshot {
    const lines = batch.progress.lines_done;
    this.samples.push({ at, lines });
    // Keep the newest sample older than the window too: a rate needs two points.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const rate = at > first.at ? ((lines - first.lines) * 1000) / (at - first.at) : undefined;
    const total = batch.request_counts.total;
    const left = total - lines;
    const etaMs = rate !== undefined && rate > 0 && total > 0 ? (left * 1000) / rate : undefined;
    return {
      status: batch.status,
      linesDone: lines,
      total,
      chunksDone: batch.progress.chunks_done,
      chunksTotal: batch.progress.chunks_total,
      rate,
      etaMs: etaMs === undefined ? undefined : Math.max(0, etaMs),
    };
  }
}

/** `in_progress  1,200/10,000 lines (12%)  chunks 2/10  45.0 lines/s  ETA 3m14s` */
export function formatProgress(p: ProgressSnapshot): string {
  const parts = [p.status.padEnd(11)];
  if (p.total > 0) {
    const pct = Math.floor((p.linesDone * 100) / p.total);
    parts.push(`${num(p.linesDone)}/${num(p.total)} lines (${pct}%)`);
  } else {
    parts.push(`${num(p.linesDone)} lines`);
  }
  if (p.chunksTotal > 0) parts.push(`chunks ${p.chunksDone}/${p.chunksTotal}`);
  if (p.rate !== undefined) parts.push(`${p.rate.toFixed(1)} lines/s`);
  if (p.etaMs !== undefined && p.status === 'in_progress') parts.push(`ETA ${formatDuration(p.etaMs)}`);
  return parts.join('  ');
}

/** 3h05m, 3m14s, 12s. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

const num = (n: number): string => n.toLocaleString('en-US');

/**
 * Shows progress lines on a stream: redrawn in place (\r) on a terminal,
 * one plain line per change otherwise (logs, pipes, CI).
 */
export class ProgressLine {
  private last = '';
  private drawn = false;

  constructor(private readonly out: { write(s: string): unknown; isTTY?: boolean }) {}

  /** `key` says what counts as a change (default the line itself); an unchanged key draws nothing. */
  show(line: string, key = line): void {
    if (key === this.last) return;
    this.last = key;
    if (this.out.isTTY) {
      this.out.write(`\r${line}\x1b[K`);
      this.drawn = true;
    } else {
      this.out.write(`${line}\n`);
    }
  }

  /** Ends the redrawn line, so that what follows starts on a fresh one. */
  done(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
