/**
 * What decide() reads and returns (decide.ts). A snapshot is everything the
 * leader observed of one pool in one pass; the live loop builds it from
 * Redis (scheduler/autoscaler/autoscale-loop.ts, through pool-snapshot.ts), the replay from its pool model
 * (replay/pool-model.ts). Work is counted in work units: the prompt plus
 * completion tokens of a chat, one per request of other tasks, so real-time
 * and bulk load and a replica's capacity add up in one currency.
 */

/** Jobs of one BullMQ queue by state: every state that holds work. */
export interface QueueCounts {
  wait: number;
  prioritized: number;
  /** Delayed jobs whose time has come (a worker may take them now). */
  delayedDue: number;
  /** Delayed jobs still in the future (a preempted chunk's back-off, a retry). */
  delayed: number;
  active: number;
}

export const emptyQueueCounts = (): QueueCounts => ({ wait: 0, prioritized: 0, delayedDue: 0, delayed: 0, active: 0 });
export const queuedJobs = (q: QueueCounts): number => q.wait + q.prioritized + q.delayedDue + q.delayed + q.active;

/** An open batch of the pool: what is left of it and when it must be done. */
export interface OpenBatch {
  id: string;
  /** Records not yet done (an estimate while it is still being planned). */
  recordsLeft: number;
  /** expires_at: the end of its completion window (epoch ms). */
  deadlineAt: number;
}

export interface PoolSnapshot {
  pool: string;
  /** When it was read (epoch ms). */
  at: number;
  /** What the actuator says the pool has. */
  replicas: { desired: number; ready: number };
  /** Workers with a live heartbeat, by state. */
  workers: { ready: number; starting: number; draining: number };
  queues: { rt: QueueCounts; bulk: QueueCounts; train: QueueCounts };
  realtime: {
    /** Real-time work units per second the pool's workers finished, over their heartbeat windows. */
    unitsPerSecond: number;
    /** Requests per second over the same windows. */
    requestsPerSecond: number;
    /** The first-token quantile (policy quantile, p99) over the windows; undefined with too few samples. */
    firstTokenMs: number | undefined;
    /** Samples behind it. */
    samples: number;
    /** Age of the oldest request still waiting for its first token (queue or worker). */
    oldestWaitingMs: number;
  };
  /**
   * Measured per-replica capacity: units per second of replicas whose engine was full (a bulk chunk
   * running fills it), over the time they were full. Absent: no replica was full in the windows.
   */
  capacity: { unitsPerSecond: number; fullMs: number } | undefined;
  bulk: {
    /** Mean work units per record of recently finished bulk records; undefined until some finished. */
    unitsPerRecord: number | undefined;
    /** Bulk work units per second the pool finished over the windows. */
    unitsPerSecond: number;
    batches: readonly OpenBatch[];
  };
  training: {
    /** Training slots of one replica (the pool's lanes.training.concurrency). */
    slotsPerReplica: number;
    /** Slots held by admitted gangs now. */
    slotsHeld: number;
    /** Sizes of the gangs waiting for slots, head first. */
    waitingGangs: readonly number[];
    /** Replicas running at least one training rank: never scaled out from under. */
    replicasWithRanks: number;
  };
}

/** decide()'s memory from one pass to the next (owned by the loop, forgotten on losing leadership). */
export interface AutoscaleState {
  /** The last replica count decide() asked for. */
  desired: number;
  /** Recent raw recommendations, for the stabilization windows. */
  recommendations: ReadonlyArray<{ at: number; replicas: number }>;
  /** Recent changes applied, for the max-step periods. */
  changes: ReadonlyArray<{ at: number; delta: number }>;
  /** Real-time demand history (units/s), for the forecast. */
  demand: ReadonlyArray<{ at: number; unitsPerSecond: number }>;
  /**
   * Per-replica capacity planned with (units/s) and where it came from; `base` is the hint or the
   * measurement that an objective-miss bound relaxes back to.
   */
  capacity: {
    unitsPerSecond: number;
    source: 'hint' | 'measured' | 'objective_miss';
    base: { unitsPerSecond: number; source: 'hint' | 'measured' };
  };
  /** Since when the pool has had no work of any kind (undefined: it has work). */
  idleSince: number | undefined;
  /** When a snapshot was last complete (for the stale-signal hold). */
  lastGoodAt: number | undefined;
}

export const autoscaleReasons = [
  /** Real-time load (forecast over the start-up time) sets the size. */
  'realtime_forecast',
  /** Real-time is missing its objective now: at least one more replica. */
  'realtime_objective_miss',
  /** A batch would miss its deadline on what real-time leaves. */
  'bulk_deadline',
  /** Work is queued and the pool has no replica: back on the first job. */
  'wake_from_zero',
  /** Waiting gangs need slots. */
  'training_gangs',
  /** Replicas running training ranks are kept. */
  'training_running',
  /** A schedule floor. */
  'floor',
  'min_replicas',
  'max_replicas',
  'cost_cap',
  /** No work for idleToZeroMs (minReplicas 0). */
  'idle_to_zero',
  /** A change held back by its stabilization window. */
  'stabilizing_up',
  'stabilizing_down',
  /** A change cut to maxStep per period. */
  'max_step_up',
  'max_step_down',
  /** Signals missing or stale (Redis outage, no heartbeats while replicas are ready): hold, never toward zero. */
  'hold_missing_signals',
] as const;
export type AutoscaleReason = (typeof autoscaleReasons)[number];

/** What made the recommendation (replicas each part asks for), for explain and metrics. */
export interface DemandParts {
  /** Replicas real-time needs at targetUtilization (forecast). */
  realtime: number;
  /** Replicas added for batch deadlines beyond what real-time leaves. */
  bulk: number;
  /** Replicas the training gangs need (held + waiting head). */
  training: number;
  /** Replicas that must stay: running training ranks. */
  running: number;
  /** The schedule floor in force (0: none). */
  floor: number;
  /** The cost cap, as replicas (undefined: none). */
  costCap: number | undefined;
}

export interface AutoscaleDecision {
  pool: string;
  /** Replicas to ask the actuator for. */
  desired: number;
  /** What it asked for before. */
  previous: number;
  reason: AutoscaleReason;
  /** The recommendation before stabilization and step limits. */
  recommendation: number;
  parts: DemandParts;
  realtime: {
    /** Demand now and forecast at now + startupMs (units/s). */
    nowUnitsPerSecond: number;
    forecastUnitsPerSecond: number;
    objectiveMs: number;
    firstTokenMs: number | undefined;
  };
  capacity: AutoscaleState['capacity'];
  bulk: {
    /** Units/s the open batches need to finish within deadlineSafety of their time left. */
    neededUnitsPerSecond: number;
    /** The batch that sets it (tightest deadline), if any. */
    tightest: string | undefined;
  };
  /** Cost per hour of `desired` replicas. */
  costPerHour: number;
}
