/** The scheduler's Prometheus metrics: what the leader decided for each pool, and why. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Seconds a training round takes, first rank start to last rank end: a second to hours. */
const roundBuckets = [0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400];

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
    trainingDecisions: new Counter({
      name: 'interfleet_scheduler_training_decisions_total',
      help: 'Gang decisions of the training pass, one per waiting gang and pass, by reason (fits, waiting_for_slots, ...).',
      labelNames: ['pool', 'reason'] as const,
      registers: [registry],
    }),
    trainingGangsAdmitted: new Counter({
      name: 'interfleet_scheduler_training_gangs_admitted_total',
      help: 'Training gangs admitted whole (each round of a job is one admission).',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    trainingGangsWaiting: new Gauge({
      name: 'interfleet_scheduler_training_gangs_waiting',
      help: 'Training gangs the last pass left waiting.',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    trainingSlotsHeld: new Gauge({
      name: 'interfleet_scheduler_training_slots_held',
      help: 'Training slots held by admitted gangs (their ranks not yet ended) after the last pass.',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    // Results of ended jobs (training-finisher.ts). Labels are pool and status only: a job id or a
    // model name as a label would grow a series per job.
    trainingJobsEnded: new Counter({
      name: 'interfleet_scheduler_training_jobs_ended_total',
      help: 'Training jobs that ended, by final status (succeeded, failed, cancelled).',
      labelNames: ['pool', 'status'] as const,
      registers: [registry],
    }),
    trainingRoundsCompleted: new Counter({
      name: 'interfleet_scheduler_training_rounds_completed_total',
      help: 'Rounds the ended training jobs completed (counted when a job ends).',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    trainingRoundSeconds: new Histogram({
      name: 'interfleet_scheduler_training_round_seconds',
      help: "A completed round's time from its first rank's start to its last rank's end (observed when its job ends).",
      labelNames: ['pool'] as const,
      buckets: roundBuckets,
      registers: [registry],
    }),
    trainingLastEvalAccuracy: new Gauge({
      name: 'interfleet_scheduler_training_last_eval_accuracy',
      help: "Held-out accuracy of the pool's most recently finished job that named an eval split.",
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    trainingWebhookDeliveries: new Counter({
      name: 'interfleet_scheduler_training_webhook_attempts_total',
      help: 'Completion webhook attempts, by outcome (delivered, retry, failed: the last attempt failed).',
      labelNames: ['pool', 'outcome'] as const,
      registers: [registry],
    }),
    autoscalerDesired: new Gauge({
      name: 'interfleet_autoscaler_desired_replicas',
      help: "Replicas the autoscaler decided for the pool (what it asks the actuator for; KEDA's external metric).",
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    autoscalerReady: new Gauge({
      name: 'interfleet_autoscaler_ready_replicas',
      help: 'Replicas of the pool the actuator reports ready.',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    autoscalerDemand: new Gauge({
      name: 'interfleet_autoscaler_demand_replicas',
      help: 'Replicas each part of the demand asks for (realtime, bulk, training, running, floor).',
      labelNames: ['pool', 'part'] as const,
      registers: [registry],
    }),
    autoscalerCapacity: new Gauge({
      name: 'interfleet_autoscaler_replica_capacity_units_per_second',
      help: 'Work units per second one replica is taken to do when full (measured, or the policy hint).',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    autoscalerDecisions: new Counter({
      name: 'interfleet_autoscaler_decisions_total',
      help: 'Autoscaling decisions, one per pool and pass, by reason (realtime_forecast, bulk_deadline, ...).',
      labelNames: ['pool', 'reason'] as const,
      registers: [registry],
    }),
    autoscalerActuatorErrors: new Counter({
      name: 'interfleet_autoscaler_actuator_errors_total',
      help: 'Decisions the actuator could not apply (API refused, unreachable).',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    autoscalerPolicyReloads: new Counter({
      name: 'interfleet_autoscaler_policy_reloads_total',
      help: 'Re-reads of the config file for autoscaling policies, by outcome (applied, invalid).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
  };
}

export type SchedulerMetrics = ReturnType<typeof createSchedulerMetrics>;
