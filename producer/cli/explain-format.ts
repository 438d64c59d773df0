/**
 * `interfleet scheduler explain` for people: per pool, the bulk budget and
 * why, what real-time looks like against its objective, how the last
 * admission pass treated each open batch, and, for pools with training gangs
 * or a training quota, each gang's place and why it waits; for pools with an
 * autoscaling policy, the replicas decided and each part of the demand. Pure.
 */
import type {
  AdmissionExplanation,
  AutoscaleExplanation,
  BudgetExplanation,
  SchedulerExplain,
  TrainingExplanation,
} from '../../common/contracts/explain.ts';

const age = (now: number, at: number): string => `${((now - at) / 1000).toFixed(1)} s ago`;
const msOr = (v: number | undefined): string => (v === undefined ? 'n/a' : `${Math.round(v)} ms`);

function budgetLines(b: BudgetExplanation, now: number): string[] {
  const d = b.decision;
  const o = d.observed;
  const q = `p${+(b.quantile * 100).toFixed(1)}`;
  const change = d.budget === d.previous ? `kept at ${d.budget}` : `${d.previous} → ${d.budget}`;
  return [
    `  bulk budget   ${d.budget} of ${o.bulkSlots} slots (${change}): ${d.reason}`,
    `  real-time     ${q} first token ${o.quantileMs === undefined && o.samples > 0 ? 'n/a (too few to judge)' : msOr(o.quantileMs)} over ${o.samples} requests (objective ${b.objectiveMs} ms${o.overObjective === undefined ? '' : `, ${o.overObjective} over it`}); ` +
      `${o.realtimeWaiting} queued${o.oldestQueuedMs === undefined ? '' : ` (oldest ${Math.round(o.oldestQueuedMs)} ms)`}, ` +
      `oldest without a first token ${Math.round(o.oldestWaitingMs)} ms; ${b.realtime.active} running`,
    `  bulk          ${o.bulkRunning} running (workers say), queue: ${b.bulk.active} active, ${b.bulk.waiting} waiting, ${b.bulk.delayed} delayed` +
      (d.preempt > 0 ? `; asked ${d.preempt} running chunks to yield` : ''),
    `  workers       ${b.workers.ready} ready, ${b.workers.draining} draining; decided by leader epoch ${b.epoch}, ${age(now, b.at)}`,
  ];
}

function admissionLines(a: AdmissionExplanation, now: number): string[] {
  const head = `  admission     window ${a.window}, ${a.queued ?? 'unknown'} chunk jobs queued; ${age(now, a.at)}`;
  if (a.batches.length === 0) return [head, '                no open batch'];
  const rows = a.batches.map((b) => {
    const what = b.decision === 'admit' ? `admit ${b.count ?? 0}` : b.decision;
    return `    ${b.batchId}  ${b.tenant.padEnd(12)} p${b.priority}  ${`${b.admitted}/${b.chunks}`.padStart(11)}  ${b.status.padEnd(11)} ${what}: ${b.reason}`;
  });
  return [head, '    batch                          tenant       prio   admitted   status      decision', ...rows];
}

type Gang = TrainingExplanation['gangs'][number];

function gangDecision(g: Gang): string {
  if (g.decision === null) return 'admitted by an earlier pass';
  // The one reason that a number explains: how far the gang is from fitting.
  const detail = g.reason === 'waiting_for_slots' && g.free !== undefined ? ` (needs ${g.size}, ${g.free} free)` : '';
  return `${g.decision}: ${g.reason ?? ''}${detail}`;
}

export function trainingLines(t: TrainingExplanation, now: number): string[] {
  const { total, held, free } = t.slots;
  const quota = t.quota === null ? '' : `, quota ${t.quota}`;
  const waiting = t.gangs.filter((g) => g.decision === 'hold').length;
  const running = t.gangs.length - waiting;
  const head = `  training      ${held} of ${total} slots held, ${free} free${quota}; ${running} running, ${waiting} waiting; ${age(now, t.at)}`;
  if (t.gangs.length === 0) return [head, '                no open gang'];
  const rows = t.gangs.map(
    (g) =>
      `    ${g.jobId}  ${g.tenant.padEnd(12)} ${`p${g.priority}`.padEnd(4)}  ${String(g.size).padStart(5)}  ${`${g.round}/${g.rounds}`.padStart(5)}  ${g.state.padEnd(8)} ${gangDecision(g)}`,
  );
  return [head, '    job                         tenant       prio  ranks  round  state    decision', ...rows];
}

const rate = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/** The autoscaling record: replicas, the reason, each part of the demand; `history` adds the last changes. */
export function autoscaleLines(a: AutoscaleExplanation, now: number, history = false): string[] {
  const d = a.decision;
  const change = d.desired === d.previous ? `kept at ${d.desired}` : `${d.previous} → ${d.desired}`;
  const p = a.parts;
  const cap = p.costCap === null ? '' : `, cost cap ${p.costCap}`;
  const lines = [
    `  autoscale     ${a.replicas.ready} of ${a.replicas.desired} replicas ready (${change}, ${a.replicas.min}–${a.replicas.max}, ${a.actuator}): ${d.reason}` +
      (d.missing ? ` (${d.missing})` : '') +
      (d.recommendation !== d.desired ? `; recommendation ${d.recommendation}` : ''),
    `                demand: real-time ${p.realtime}, + bulk ${p.bulk}, training ${p.training}, running ranks ${p.running}, floor ${p.floor}${cap}`,
    `                real-time ${rate(a.realtime.nowUnitsPerSecond)} units/s now, ${rate(a.realtime.forecastUnitsPerSecond)} forecast; p99 first token ${msOr(a.realtime.firstTokenMs ?? undefined)} (objective ${a.realtime.objectiveMs} ms); replica capacity ${rate(a.capacity.unitsPerSecond)} units/s (${a.capacity.source})`,
    `                bulk needs ${rate(a.bulk.neededUnitsPerSecond)} units/s${a.bulk.tightest ? ` (tightest ${a.bulk.tightest})` : ''}; ${a.costPerHour.toFixed(2)}/h; epoch ${a.epoch}, ${age(now, a.at)}`,
  ];
  if (a.actuatorError) lines.push(`                not applied: ${a.actuatorError}`);
  if (history && a.history.length > 0) {
    lines.push('    last changes');
    for (const h of a.history) {
      lines.push(`      ${new Date(h.at).toISOString()}  ${h.previous} → ${h.desired}  ${h.reason}`);
    }
  }
  return lines;
}

export function formatExplain(e: SchedulerExplain): string {
  const out: string[] = [];
  for (const p of e.pools) {
    out.push(`pool ${p.pool}`);
    if (!p.budget && !p.admission && !p.training && !p.autoscale) {
      out.push('  no decision recorded in the last minute: is a scheduler running (and leading)?');
    }
    if (p.budget) out.push(...budgetLines(p.budget, e.now));
    if (p.admission) out.push(...admissionLines(p.admission, e.now));
    if (p.training) out.push(...trainingLines(p.training, e.now));
    if (p.autoscale) out.push(...autoscaleLines(p.autoscale, e.now));
    out.push('');
  }
  return out.join('\n');
}
