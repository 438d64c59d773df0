/** The replay's table, as `interfleet autoscale simulate` and bench:autoscale print it. */
import type { Comparison } from './compare.ts';

const pad = (s: string, n: number): string => s.padEnd(n);
const lpad = (s: string, n: number): string => s.padStart(n);

export function formatComparison(c: Comparison, objectiveMs: number, currency = ''): string {
  const head = ['policy', 'replica-h', 'cost', 'peak', 'min within', 'ramp min over', 'late batches', 'worst p99'];
  const rows = c.results.map(({ label, summary: s }) => [
    label,
    s.replicaHours.toFixed(2),
    `${currency}${s.cost.toFixed(2)}`,
    String(s.peakReplicas),
    `${(s.withinShare * 100).toFixed(1)} % (${s.minutesWithin}/${s.minutes})`,
    `${s.rampMinutesOver}/${s.rampMinutes}`,
    `${s.lateBatches}/${s.batches.length}`,
    `${(s.worstMinuteP99Ms / 1000).toFixed(1)} s`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((cell, i) => (i === 0 ? pad(cell, widths[i]!) : lpad(cell, widths[i]!))).join('  ');
  return [
    `objective: first-token p99 ≤ ${objectiveMs} ms per minute; baseline targets per replica: real-time ${c.targets.rt} jobs (in flight at ${Math.round(c.targets.rtUnitsPerSecond)} units/s, ${(c.targets.residenceMs / 1000).toFixed(1)} s in the engine), bulk ${c.targets.bulk} chunk job; warm start ${c.initialReplicas} replicas; static: ${c.staticReplicas}`,
    line(head),
    ...rows.map(line),
  ].join('\n');
}
