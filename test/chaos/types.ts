/**
 * The fault suite's contract (`npm run chaos`): each row of the table in
 * docs/reliability.md is a module under test/chaos/rows/ exporting a
 * `ChaosRow`. A row brings up the real processes it needs under its own Redis
 * key prefix, injects its fault for real, measures, and tears everything down.
 */

export interface ChaosEnv {
  /** A Redis the row may use (rows that kill Redis start their own redis-server instead). */
  readonly redisUrl: string;
  /** A key prefix no other row uses. */
  readonly prefix: string;
  /** A fresh temporary directory the row owns (files, Redis data dirs, logs). */
  readonly workDir: string;
  /** /work/shared or ../shared beside the clone: data sets and the tiny model. */
  readonly sharedDir: string;
  /** `short`: the bounded form CI runs; `full`: the figures recorded in docs/reliability.md. */
  readonly mode: 'short' | 'full';
  log(message: string): void;
}

export interface RowResult {
  /** The steady load held while the fault was injected, in words with rates ("rt 20 req/s, 2 batches, 1 training job"). */
  readonly load: string;
  /** Accepted work that never reached a final state with a result or a visible failure reason. Must be 0. */
  readonly lost: number;
  /** Result records written more than once. Must be 0. */
  readonly duplicated: number;
  /** From the fault to service restored (null where the row has no recovery to time). */
  readonly recoveryMs: number | null;
  /** Whether every "must hold" clause held; `detail` says which did not. */
  readonly holds: boolean;
  /** Figures and observations, one line. */
  readonly detail: string;
}

export interface ChaosRow {
  readonly id: string;
  /** The fault or bad input, as the table's first column says it. */
  readonly fault: string;
  /** What must hold, as the table's second column says it. */
  readonly mustHold: string;
  /** Run in CI's short form too. */
  readonly short?: boolean;
  run(env: ChaosEnv): Promise<RowResult>;
}
