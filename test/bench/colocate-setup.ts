/**
 * What every bench:colocate setup offers the run: a way to send one real-time
 * request (resolving with its enqueue-to-first-token time, wall ms), a way to
 * start the bulk backlog, a meter of bulk output, and a close.
 */
import type { SimSpec } from './colocate-workload.ts';
import type { BulkMeter } from './colocate-bulk-meter.ts';
import type { SendRealtime } from './colocate-replay.ts';

/** Sizes shared by every setup of a run. */
export interface ColocateParams {
  /** Worker processes (= modelled GPUs). */
  workers: number;
  /** Real-time jobs one worker runs at once. */
  rtSlots: number;
  /** Workers given to real-time alone in the GPU split (c″); the rest run bulk alone. */
  rtWorkers: number;
  /** Bulk chunks one worker runs at once. */
  bulkSlots: number;
  sim: SimSpec;
  /** Records per micro-batch (pools[].lanes.bulk.batchSize). */
  batchSize: number;
  /** Records per bulk chunk. */
  chunkRecords: number;
  /** Chunks in the backlog. */
  backlogChunks: number;
  bulkPromptTokens: number;
  bulkOutputTokens: number;
}

export interface RunningSetup {
  send: SendRealtime;
  /** Enqueues (or submits) the whole bulk backlog. */
  startBulk(): Promise<void>;
  meter: BulkMeter;
  /** Lines worth printing after the run (e.g. what the scheduler decided). */
  notes(): string[] | Promise<string[]>;
  close(): Promise<void>;
}
