/**
 * Where a `rounds` job's time went, round by round, from the timestamps the
 * system itself writes (all Date.now() on one machine, so one clock):
 *
 *   admitted      the round's rank jobs' BullMQ `timestamp`: the leader adds them in the
 *                 pass that admits the gang (training-loop.ts), so the earliest is admission
 *   startedAt     each rank's record (training-state.ts), written as its worker takes the job,
 *                 before it pulls its files
 *   train_seconds each rank's own metric: featurizing and SGD inside the program (compute)
 *   endedAt       each rank's record, after its output is uploaded, as it settles
 *   reduce        the round's reduce job: `timestamp` (the leader added it), `processedOn`
 *                 (a worker took it), `finishedOn` (model averaged, uploaded, gang moved on)
 *
 * Per round r (1 ≤ r < R, so that round r + 1's admission closes it):
 *   round         admitted(r+1) − admitted(r): the wall time of one round
 *   compute       the slowest rank's train_seconds (the round waits on it); also the median
 *   rank other    per rank, (endedAt − startedAt) − train_seconds: pull shard and model, start
 *                 the program, read, write, upload, settle (median over the round's ranks)
 *   start         max startedAt(r) − admitted(r): admission until every rank runs
 *   gap           max startedAt(r+1) − max endedAt(r): the last rank's end until every rank
 *                 of the next round runs; the sum of the four below
 *     to reduce   reduce.timestamp − max endedAt(r): until the leader's pass adds the reduce
 *     reduce      reduce.finishedOn − reduce.timestamp: queued, taken, run (its run alone:
 *                 finishedOn − processedOn)
 *     admission   admitted(r+1) − reduce.finishedOn: until the leader's pass admits the next round
 *     start       max startedAt(r+1) − admitted(r+1)
 *   overhead      round − compute: everything but the slowest rank's own learning
 */

export interface RankTimes {
  rank: number;
  /** The rank job's BullMQ `timestamp` (added). */
  addedAt: number;
  startedAt: number;
  endedAt: number;
  trainSeconds: number;
}

export interface RoundTimes {
  round: number;
  ranks: RankTimes[];
  reduce: { addedAt: number; processedOn: number; finishedOn: number };
}

export interface RoundBreakdown {
  round: number;
  roundMs: number;
  computeMs: number;
  computeMedianMs: number;
  rankOtherMs: number;
  startMs: number;
  gapMs: number;
  toReduceMs: number;
  reduceMs: number;
  reduceRunMs: number;
  admissionMs: number;
  nextStartMs: number;
  overheadMs: number;
}

const max = (xs: number[]): number => Math.max(...xs);
const min = (xs: number[]): number => Math.min(...xs);

function medianOf(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** Each round but the last, in order (see the header); `rounds` in round order, every rank present. */
export function roundBreakdowns(rounds: readonly RoundTimes[]): RoundBreakdown[] {
  const out: RoundBreakdown[] = [];
  for (let i = 0; i + 1 < rounds.length; i++) {
    const cur = rounds[i]!;
    const next = rounds[i + 1]!;
    const admitted = min(cur.ranks.map((r) => r.addedAt));
    const nextAdmitted = min(next.ranks.map((r) => r.addedAt));
    const lastEnd = max(cur.ranks.map((r) => r.endedAt));
    const nextStart = max(next.ranks.map((r) => r.startedAt));
    const compute = cur.ranks.map((r) => r.trainSeconds * 1000);
    const roundMs = nextAdmitted - admitted;
    out.push({
      round: cur.round,
      roundMs,
      computeMs: max(compute),
      computeMedianMs: medianOf(compute),
      rankOtherMs: medianOf(cur.ranks.map((r) => r.endedAt - r.startedAt - r.trainSeconds * 1000)),
      startMs: max(cur.ranks.map((r) => r.startedAt)) - admitted,
      gapMs: nextStart - lastEnd,
      toReduceMs: cur.reduce.addedAt - lastEnd,
      reduceMs: cur.reduce.finishedOn - cur.reduce.addedAt,
      reduceRunMs: cur.reduce.finishedOn - cur.reduce.processedOn,
      admissionMs: nextAdmitted - cur.reduce.finishedOn,
      nextStartMs: nextStart - nextAdmitted,
      overheadMs: roundMs - max(compute),
    });
  }
  return out;
}
