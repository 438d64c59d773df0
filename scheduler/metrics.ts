/** The scheduler's Prometheus metrics: what the leader decided for each pool, and why. */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export function createSchedulerMetrics(defaultLabels: Record<string, string>) {
  const registry = new Registry();
  registry.setDefaultLabels(defaultLabels);
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    leader: new Gauge({
      name: 'interfleet_scheduler_leader',
      help: '1 while this replica leads (its epoch is interfleet_scheduler_epoch), else 0.',
      registers: [registry],
    }),
    epoch: new Gauge({
      name: 'interfleet_scheduler_epoch',
      help: 'The fencing epoch this replica leads with (0 as a standby).',
      registers: [registry],
    }),
    bulkBudget: new Gauge({
      name: 'interfleet_scheduler_bulk_budget',
      help: 'Bulk chunks the pool may run at once (the global concurrency of bulk.<pool>).',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    bulkSlots: new Gauge({
      name: 'interfleet_scheduler_bulk_slots',
      help: "Bulk slots of the pool's ready workers (the budget's ceiling).",
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    firstTokenQuantile: new Gauge({
      name: 'interfleet_scheduler_realtime_first_token_seconds',
      help: "The pool's real-time enqueue-to-first-token quantile (scheduler.balance.quantile) over the workers' windows.",
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    budgetDecisions: new Counter({
      name: 'interfleet_scheduler_budget_decisions_total',
      help: 'Bulk-budget decisions, by reason (objective_missed, headroom, no_realtime_load, ...).',
      labelNames: ['pool', 'reason'] as const,
      registers: [registry],
    }),
    preemptions: new Counter({
      name: 'interfleet_scheduler_preemptions_total',
      help: 'Running bulk chunks the scheduler asked to yield.',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    batchDecisions: new Counter({
      name: 'interfleet_scheduler_batch_decisions_total',
      help: 'Batch decisions of the admission pass, by kind and reason.',
      labelNames: ['kind', 'reason'] as const,
      registers: [registry],
    }),
  };
}

export type SchedulerMetrics = ReturnType<typeof createSchedulerMetrics>;
