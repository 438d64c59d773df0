/**
 * The one configuration schema. Parsed once at each process's edge from the
 * environment plus an optional YAML file (INTERFLEET_CONFIG); the typed result
 * is passed down. Every default lives here, durations are `…Ms` numbers.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { checkCron } from './cron-check.ts';
import { z } from 'zod';
import { expandUriTemplate, UriTemplateError } from './batch/uri-template.ts';
import { batchEndpoints } from './contracts/batch.ts';
import { storageConfigSchema } from './storage/config.ts';
import { autoscalePolicySchema, autoscalerConfigSchema } from './autoscale/policy.ts';

const poolName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'pool names are lower-case letters, digits and dashes (max 63)');

const laneSchema = z.object({
  /** BullMQ worker concurrency: how many requests one worker process runs at once. */
  concurrency: z.number().int().min(1).max(1024).default(4),
  /**
   * BullMQ Workers that split those slots. BullMQ fetches one job per Redis
   * round trip per Worker, so behind a link of a few ms RTT one Worker caps
   * the lane near 1/RTT jobs/s; each extra fetcher costs a blocking connection
   * and some wake-ups at low load (docs/benchmarks.md).
   */
  fetchers: z.number().int().min(1).max(64).default(1),
});

const bulkLaneSchema = z.object({
  /** Batch chunks one worker process runs at once (each is micro-batched inside). */
  concurrency: z.number().int().min(0).max(64).default(1),
  /** Records per micro-batch handed to the backend. */
  batchSize: z.number().int().min(1).max(4096).default(64),
  /** In-flight records for a backend that cannot batch (runs them one call each). */
  recordConcurrency: z.number().int().min(1).max(1024).default(16),
  /**
   * BullMQ lock on a running chunk, renewed at half this period. A worker
   * that dies (kill -9, node lost) holds its chunk until the lock expires and
   * the stalled check (every `stalledIntervalMs`) hands it to another worker.
   */
  lockDurationMs: z.number().int().min(500).default(30_000),
  stalledIntervalMs: z.number().int().min(250).default(15_000),
  /**
   * How long a preempted chunk waits in the delayed set before it may run
   * again: one scheduler balance pass (scheduler.balanceEveryMs' default), so
   * the budget that caused the preemption is re-decided before it returns.
   */
  preemptDelayMs: z.number().int().min(0).default(1000),
});

/** The trainers that ship with the worker, named `builtin:<name>` in a job's command. */
export const builtinPrograms = ['builtin:text-classifier'] as const;

/** Kubernetes names: a DNS-1123 label (namespaces, service accounts). */
const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a DNS-1123 label (lower case, digits, -; at most 63)');

/** `kubernetes` runner: each rank a batch/v1 Job on OKE (gpu-worker/training/runners/kubernetes-job.ts). */
const kubernetesRunnerSchema = z.object({
  namespace: dnsLabel.default('interfleet'),
  /** The image the rank's command runs in (it holds the program; it pulls and pushes its own files). */
  image: z.string().min(1, 'image must not be empty'),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  /** nvidia.com/gpu requested and limited per rank. */
  gpus: z.number().int().min(0).default(1),
  /** Optional cpu / memory requests (Kubernetes quantities: '4', '16Gi'). */
  cpu: z.string().min(1).optional(),
  memory: z.string().min(1).optional(),
  nodeSelector: z.record(z.string(), z.string()).default({}),
  tolerations: z
    .array(
      z.object({
        key: z.string().optional(),
        operator: z.enum(['Exists', 'Equal']).optional(),
        value: z.string().optional(),
        effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
        tolerationSeconds: z.number().int().optional(),
      }),
    )
    .default([]),
  /**
   * The pods' identity (its workload identity is what reads and writes storage). Absent: the
   * namespace's `default` account, which should hold no rights.
   */
  serviceAccountName: dnsLabel.optional(),
  /**
   * Mount the service account's API token in the rank's pod. Off: a rank cannot call the Kubernetes
   * API as anyone. Turn on only for an identity the program needs a token for (OKE workload identity
   * reads the projected token) and that holds no rights over the fleet.
   */
  automountServiceAccountToken: z.boolean().default(false),
  /** How long a finished Job (and its pod, logs) stays for inspection. */
  ttlSecondsAfterFinished: z.number().int().min(0).default(3600),
  /** How often the Job and its pod are read while it runs. */
  pollIntervalMs: z.number().int().min(100).default(2000),
  /** Consecutive failed reads of a running Job before the rank fails (retryable). */
  maxPollFailures: z.number().int().min(1).default(5),
  /** Each API call is abandoned after this long. */
  requestTimeoutMs: z.number().int().min(100).default(10_000),
  /** A pod still not started after this long (unschedulable, image not pulled) fails the rank. */
  startTimeoutMs: z.number().int().min(1000).default(600_000),
  /** Path of a kubeconfig; absent: $KUBECONFIG, then in-cluster, then ~/.kube/config (kubectl's order). */
  kubeconfig: z.string().optional(),
  context: z.string().optional(),
});
export type KubernetesRunnerConfig = z.infer<typeof kubernetesRunnerSchema>;

export const trainingRunnerKinds = ['local', 'kubernetes'] as const;

/** How a rank's command runs: `local` (a child process of the worker) or `kubernetes` (a Job). */
const trainingRunnerSchema = z
  .object({
    kind: z.enum(trainingRunnerKinds).default('local'),
    kubernetes: kubernetesRunnerSchema.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.kind === 'kubernetes' && !r.kubernetes) {
      ctx.addIssue({
        code: 'custom',
        path: ['kubernetes'],
        message: "runner kind 'kubernetes' needs runner.kubernetes (at least its image)",
      });
    }
  });
export type TrainingRunnerConfig = z.infer<typeof trainingRunnerSchema>;

const trainingLaneSchema = z.object({
  /** Gang ranks (training commands) one worker process runs at once; 0 turns the lane off. */
  concurrency: z.number().int().min(0).max(64).default(1),
  /**
   * The programs a job's `command` may name (exactly), checked by the API and again by the worker:
   * a training job runs its command on the GPU workers. `*` allows any (trusted submitters only).
   */
  programs: z.array(z.string().min(1, 'a program must not be empty')).default([...builtinPrograms]),
  /**
   * Variables every rank and reduce of the pool gets (HF_HOME, a cache path, a credential meant for
   * the ranks): a command inherits nothing else of the worker's but PATH, the locale, the time zone,
   * LD_LIBRARY_PATH and the GPU and NCCL selection (gpu-worker/training/run-command.ts). The rank's
   * own variables (RANK, INTERFLEET_*, HOME, TMPDIR, …) are set after these and cannot be changed.
   */
  env: z
    .record(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name: letters, digits and _'),
      z.string().refine((v) => !v.includes('\0'), 'a value may not contain NUL'),
    )
    .default({}),
  /**
   * BullMQ's lock on a running rank or reduce, renewed every half of it (the command runs in a child
   * process, so the worker's event loop is free to renew). A worker that dies (kill -9, node lost)
   * holds its rank until the lock expires; the stalled check of the pool's other training lanes
   * (every `stalledIntervalMs`) then puts it back on the queue, so a lost rank runs again within
   * about lockDurationMs + stalledIntervalMs: 15 s by default, not BullMQ's 30 + 30 s. Shorter
   * locks cost one renewal per running rank per half lock; a Redis outage longer than the lock
   * lets a rank run twice (the first settlement counts, the copy is superseded).
   */
  lockDurationMs: z.number().int().min(1000).default(10_000),
  stalledIntervalMs: z.number().int().min(250).default(5_000),
  /** Times a rank or reduce may be lost with its worker and run again; once more and its job fails (so does the gang). */
  maxStalledCount: z.number().int().min(0).max(100).default(3),
  /**
   * Gang mode: the address rank 0 publishes for its peers (MASTER_ADDR). Absent: the POD_IP
   * environment variable (the downward API's status.podIP on OKE), else the host's first
   * non-loopback IPv4 address, else 127.0.0.1 (gpu-worker/training/rendezvous.ts).
   */
  advertiseHost: z.string().min(1, 'advertiseHost must not be empty').optional(),
  /** Gang mode: how long a rank waits for rank 0's address before it fails (and the gang restarts). */
  rendezvousTimeoutMs: z.number().int().min(100).default(600_000),
  /** Where a rank's command runs (runners/registry.ts). */
  runner: trainingRunnerSchema.prefault({}),
});
export type TrainingLaneConfig = z.infer<typeof trainingLaneSchema>;

/** Whether a pool's allow-list lets a job run `command`. */
export const programAllowed = (programs: readonly string[], command: string): boolean =>
  programs.includes('*') || programs.includes(command);

/**
 * How a batch is cut into chunks (one job on `bulk.<pool>` each). Every chunk
 * costs a fixed amount besides its lines: a job's trip through Redis, a
 * ranged read, two create-only part writes (each flushed), its settlement;
 * about 10 ms of a local worker's time, and a few round trips of tens of ms
 * each against a cloud bucket. Cheap lines therefore want long chunks
 * (bench:batch, 1M sentiment lines: 1000-line chunks spend 23 % more worker CPU per
 * line than 5000-line ones), while the byte cap keeps chunks of long,
 * costly requests (chat prompts of kilobytes) near a thousand lines, so a
 * mid-sized batch still spreads over many workers and a lost chunk is little
 * work to redo. Preemption does not depend on it: a chunk yields at any record.
 */
export const DEFAULT_CHUNK_LINES = 5000;
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

const durationRe = /^(\d+)(ms|s|m|h|d)$/;
const durationUnits = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90s`, `15m`, `24h`, `7d` → milliseconds, or undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = durationRe.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * durationUnits[m[2] as keyof typeof durationUnits];
}

/** A cron trigger: launches a batch from a URI template (see common/batch/uri-template.ts). */
const batchScheduleSchema = z
  .object({
    /** Unique; also the BullMQ job scheduler id. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'schedule names are letters, digits, _ . - (max 64)'),
    /** Cron pattern (BullMQ / cron-parser syntax, 5 or 6 fields). */
    cron: z.string().min(1),
    /** IANA time zone for the pattern and the template's dates (default UTC). */
    tz: z.string().default('UTC'),
    /** Input URI template, e.g. gs://bucket/events/{date-1d}/ ({date} {yyyy} {mm} {dd} {hh}, optional ±Nd/±Nh). */
    input: z.string().min(1),
    endpoint: z.enum(batchEndpoints).default('/v1/infer'),
    /** The pool (model) that runs it. */
    model: poolName,
    completionWindow: z.string().regex(durationRe, 'durations look like 90s, 15m, 24h, 7d').default('24h'),
    /** Output prefix template; default beside the input. */
    output: z.string().optional(),
    priority: z.number().int().min(0).max(9).default(0),
    tenant: z.string().min(1).max(64).default('default'),
    metadata: z.record(z.string(), z.string()).optional(),
  })
  // Checked here, not when the scheduler first upserts it: a typo in a pattern, zone or template
  // would otherwise surface as a job scheduler that never fires, or a cron job failing at 3 a.m.
  .superRefine((sched, ctx) => {
    if (!checkCron(sched, ctx)) return;
    for (const field of ['input', 'output'] as const) {
      const template = sched[field];
      if (template === undefined) continue;
      try {
        expandUriTemplate(template, new Date(), sched.tz);
      } catch (err) {
        if (!(err instanceof UriTemplateError)) throw err;
        ctx.addIssue({ code: 'custom', path: [field], message: err.message });
      }
    }
  });
export type BatchSchedule = z.infer<typeof batchScheduleSchema>;

export const backendKinds = ['embedded', 'openai', 'echo', 'sim'] as const;

/** The sim backend's modelled GPU server (gpu-worker/backends/sim*.ts); other backends ignore it. */
const simSchema = z.object({
  /** Wall time per unit of model time: 0.1 runs 10× faster; divide measured latencies by it. */
  timeScale: z.number().gt(0).max(1000).default(1),
  /** Sequences in one engine step (vLLM's max_num_seqs, whose default is 256). */
  maxNumSeqs: z.number().int().min(1).max(4096).default(256),
  /** Tokens in one engine step (vLLM's max_num_batched_tokens). */
  maxNumBatchedTokens: z.number().int().min(1).max(1_048_576).default(2048),
  /** Stall-free chunked prefill (vLLM V1) rather than prefill-first steps that pause decodes (vLLM V0). */
  chunkedPrefill: z.boolean().default(true),
  /**
   * vLLM's --scheduling-policy: `priority` serves real-time ahead of bulk (interfleet passes each
   * request's priority), `fcfs` (vLLM's default) serves in arrival order whatever the priority.
   */
  schedulingPolicy: z.enum(['priority', 'fcfs']).default('priority'),
  /**
   * Modelled start-up of a replica (node, image pull, weights into GPU memory), in model time: the
   * worker reports ready no sooner than this (× timeScale) after its process started. Default 0.
   */
  startupMs: z.number().int().min(0).default(0),
});
export type SimOptions = z.infer<typeof simSchema>;

const poolSchema = z
  .object({
    name: poolName,
    /**
     * Model backend: embedded (CPU, in-process), openai (any OpenAI-compatible server), echo (no-op, for
     * benchmarks), sim (a modelled GPU server, for benchmarks and tests).
     */
    backend: z.enum(backendKinds).default('embedded'),
    /** Path of the GGUF model file (embedded backend). */
    modelPath: z.string().default('models/stories260K.gguf'),
    /** Base URL of the OpenAI-compatible server (openai backend), e.g. http://vllm:8000/v1. */
    baseUrl: z.url().optional(),
    /** Model name sent to the upstream server (openai backend); defaults to the pool name. */
    upstreamModel: z.string().optional(),
    /** Name of the environment variable holding the upstream API key (openai backend). */
    apiKeyEnv: z.string().optional(),
    /** Upper bound on generated tokens when a request does not set max_tokens. */
    defaultMaxTokens: z.number().int().min(1).max(32768).default(128),
    /** Real-time requests allowed to wait in this pool's queue before new ones get 429. */
    maxWaiting: z.number().int().min(1).default(1000),
    /**
     * The pool's real-time objective: scheduler.balance.quantile (p99) of the time from enqueue to
     * the first token stays under this. The scheduler shrinks the bulk budget to hold it.
     */
    firstTokenObjectiveMs: z.number().int().min(1).default(1000),
    sim: simSchema.prefault({}),
    /**
     * Most of the pool's training slots that admitted gangs may hold at once (scheduler/gang-admission.ts);
     * absent: every slot. A gang larger than this is refused at submission.
     */
    trainingQuota: z.number().int().min(0).optional(),
    /**
     * How the pool's replicas scale (common/autoscale/policy.ts); absent: a fixed size (the launcher's
     * `workers` under npm start, the Deployment's replicas on Kubernetes), nothing decides it.
     */
    autoscale: autoscalePolicySchema.optional(),
    lanes: z
      .object({
        realtime: laneSchema.prefault({}),
        bulk: bulkLaneSchema.prefault({}),
        training: trainingLaneSchema.prefault({}),
      })
      .prefault({}),
  })
  .superRefine((pool, ctx) => {
    if (pool.backend === 'openai' && !pool.baseUrl) {
      ctx.addIssue({ code: 'custom', path: ['baseUrl'], message: 'the openai backend needs baseUrl' });
    }
  });

/** The embedded default pool's policy (a pool configured without `autoscale` keeps a fixed size). */
const embeddedAutoscale = { minReplicas: 1, maxReplicas: 4, startupMs: 5000, scaleDown: { stabilizationMs: 60_000 } };

/**
 * Who may call the producer. `mode`: `auto` (the default) turns auth on when keys are configured,
 * leaves it off on a loopback listen address without keys (npm start), and refuses to start on any
 * other address without keys; `keys` requires keys; `none` turns auth off on purpose (a private
 * network, a proxy that authenticates). `producer.auth: none` is short for `{ mode: none }`.
 */
const authSchema = z.preprocess(
  (v) => (typeof v === 'string' ? { mode: v } : v),
  z
    .object({
      mode: z.enum(['auto', 'keys', 'none'], { error: 'auth mode is auto, keys or none' }).default('auto'),
      /** A YAML or JSON key file (a mounted Kubernetes Secret); env INTERFLEET_API_KEYS_FILE. */
      keysFile: z.string().min(1).optional(),
      /** The same content inline (a Secret exposed as an env var); env INTERFLEET_API_KEYS. */
      keys: z.string().optional(),
    })
    .prefault({}),
);

/** Per-tenant request limits of the API (a sliding count per window, shared by every replica through Redis). */
const rateLimitSchema = z
  .object({
    /** Default: on when auth is on (limits are per tenant, and with auth off every caller is one tenant). */
    enabled: z.boolean().optional(),
    /** Requests per tenant per window. */
    max: z.number().int().min(1).default(6000),
    windowMs: z.number().int().min(1000).default(60_000),
    /** A tenant's own `max`, replacing the default. */
    tenants: z.record(z.string().min(1), z.object({ max: z.number().int().min(1) })).default({}),
  })
  .prefault({});

export const configSchema = z.object({
  redis: z
    .object({
      /** redis:// or rediss:// (TLS); user and password go in the URL (ACL). */
      url: z.string().default('redis://127.0.0.1:6379'),
      /** Treat `url` as a seed node of a Redis Cluster. */
      cluster: z.boolean().default(false),
      /** Key prefix for every key interfleet writes; tests use one each. */
      prefix: z
        .string()
        .regex(/^[A-Za-z0-9_.:-]+$/, 'prefix may use letters, digits, _ . : -')
        .default('interfleet'),
      /** Cap on ioredis reconnect backoff (it grows to 20 s otherwise). */
      maxReconnectDelayMs: z.number().int().min(50).default(2000),
      /**
       * What each role does at start when Redis may evict keys (a maxmemory-policy other than
       * noeviction drops queued jobs and batch state under memory pressure, silently): `warn` (an
       * error-level log line), `refuse` (exit; the default when NODE_ENV=production, as in the image),
       * or `off`.
       */
      evictionCheck: z.enum(['warn', 'refuse', 'off']).default('warn'),
    })
    .prefault({}),
  producer: z
    .object({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Largest request body accepted; larger ones get 413 before touching Redis. */
      bodyLimitBytes: z
        .number()
        .int()
        .min(1024)
        .default(1024 * 1024),
      /** Deadline given to a request that sets none. */
      defaultTimeoutMs: z.number().int().min(1).default(30_000),
      maxTimeoutMs: z.number().int().min(1).default(600_000),
      /** Retry-After sent with 429 and 503. */
      retryAfterMs: z.number().int().min(0).default(1000),
      /** How long a request waits on an unreachable Redis before 503. */
      redisCommandTimeoutMs: z.number().int().min(10).default(500),
      /** How often queue depths are refreshed for admission and metrics. */
      depthRefreshMs: z.number().int().min(10).default(250),
      /** On SIGTERM: how long to keep answering requests already accepted. */
      shutdownGraceMs: z.number().int().min(0).default(30_000),
      /** Bull Board may retry, clean or remove jobs only when this is false. */
      boardReadOnly: z.boolean().default(true),
      auth: authSchema,
      rateLimit: rateLimitSchema,
    })
    .prefault({}),
  worker: z
    .object({
      /** Pool this worker serves (defaults to the first pool). */
      pool: poolName.optional(),
      heartbeatMs: z.number().int().min(50).default(2000),
      heartbeatTtlMs: z.number().int().min(100).default(6000),
      /**
       * Real-time latencies the heartbeat reports cover this much recent time: long enough for a
       * p99 to mean something at tens of requests a second, short enough for the scheduler to react.
       */
      latencyWindowMs: z.number().int().min(100).default(10_000),
      /** On SIGTERM: how long in-flight work may take before the worker exits anyway. */
      shutdownGraceMs: z.number().int().min(0).default(30_000),
      /** /metrics and /healthz port; 0 picks a free one, -1 turns it off. */
      metricsPort: z.number().int().min(-1).max(65535).default(9100),
      metricsHost: z.string().default('127.0.0.1'),
      /** Trained models (sentiment `model`) a worker keeps loaded at once, least recently used out first. */
      trainedModelCacheSize: z.number().int().min(1).max(1024).default(4),
    })
    .prefault({}),
  scheduler: z
    .object({
      leaseTtlMs: z.number().int().min(100).default(5000),
      renewEveryMs: z.number().int().min(50).default(1000),
      /** How often the leader re-decides each pool's bulk budget. */
      balanceEveryMs: z.number().int().min(50).default(1000),
      /** The bulk-budget controller (scheduler/bulk-budget.ts says what each knob does). */
      balance: z
        .object({
          quantile: z.number().gt(0).max(1).default(0.99),
          minSamples: z.number().int().min(1).default(20),
          missZ: z.number().min(0).default(2),
          decrease: z.number().gt(0).lt(1).default(0.5),
          increase: z.number().gt(0).max(1).default(0.1),
          headroom: z.number().gt(0).max(1).default(0.8),
          holdAfterDecreaseMs: z.number().int().min(0).default(3000),
          preemptAbove: z.number().min(1).default(2),
          minBudget: z.number().int().min(0).default(0),
        })
        .prefault({}),
      /** /metrics and /healthz of a scheduler replica; 0 picks a free port, -1 turns it off. */
      metricsPort: z.number().int().min(-1).max(65535).default(9300),
      metricsHost: z.string().default('127.0.0.1'),
    })
    .prefault({}),
  batch: z
    .object({
      /** Most requests (non-blank lines) per chunk (see DEFAULT_CHUNK_LINES). */
      chunkLines: z.number().int().min(1).max(1_000_000).default(DEFAULT_CHUNK_LINES),
      /** Most bytes per chunk (a single longer line makes a chunk of its own). */
      chunkBytes: z.number().int().min(1024).default(DEFAULT_CHUNK_BYTES),
      /**
       * A pool's admission window (chunk jobs waiting or running) until the balance pass knows its
       * bulk budget; from then on the window is 2 × the budget (scheduler/batch-decisions.ts).
       */
      windowPerPool: z.number().int().min(1).max(100_000).default(16),
      /** How often the scheduler admits chunks, expires batches and starts finalisation. */
      admitEveryMs: z.number().int().min(10).default(500),
      /** Weighted fair share of each pool's window across tenants (scheduler/fair-share.ts); unlisted tenants weigh 1. */
      tenants: z
        .record(z.string().min(1).max(64), z.object({ weight: z.number().positive().max(1000).default(1) }))
        .default({}),
      /**
       * A batch whose time left is at most `windowFraction` of its completion window is admitted first
       * (earliest deadline first), charged to its tenant's share; a tenant may run at most
       * `maxDebtChunks` chunks ahead of its share that way. windowFraction 0 turns the boost off.
       */
      deadlineBoost: z
        .object({
          windowFraction: z.number().min(0).max(1).default(0.1),
          maxDebtChunks: z.number().int().min(0).max(100_000).default(16),
        })
        .prefault({}),
      /** Longest completion_window a batch may ask for. */
      maxCompletionWindowMs: z
        .number()
        .int()
        .min(1000)
        .default(7 * 86_400_000),
      /** Planning and finalisation jobs one producer replica runs at once. */
      controlConcurrency: z.number().int().min(1).max(64).default(2),
      /** Cron triggers (BullMQ job schedulers), upserted by the scheduler leader. */
      schedules: z.array(batchScheduleSchema).default([]),
    })
    .prefault({}),
  launcher: z
    .object({
      /**
       * Local gpu-worker processes `npm start` starts for each pool that has no `autoscale` policy
       * (a pool with one starts at its policy's minReplicas, and the autoscaler takes it from there).
       */
      workers: z.number().int().min(0).max(64).default(2),
      /**
       * The folder `npm start` gives file:// when storage.file.roots is empty (created if missing):
       * default $XDG_DATA_HOME/interfleet/data, else ~/.local/share/interfleet/data.
       */
      dataDir: z.string().regex(/^\//, 'launcher.dataDir is an absolute path').optional(),
      /**
       * The private redis-server `npm start` starts when none answers at redis.url: persisted with
       * an append-only file in `dataDir` (default: $XDG_STATE_HOME/interfleet/redis, else
       * ~/.local/state/interfleet/redis), so that a stopped and restarted `npm start` finds every
       * queued job and batch it had. `appendfsync`: `everysec` (default; a crash of the machine, not
       * of Redis, loses up to about a second of acknowledged writes), `always` (fsync before each
       * reply: nothing acknowledged is lost, at the cost bench:redis-durability measures), `no` (the
       * OS decides).
       */
      redis: z
        .object({
          dataDir: z.string().min(1).optional(),
          appendfsync: z.enum(['everysec', 'always', 'no']).default('everysec'),
        })
        .prefault({}),
    })
    .prefault({}),
  /** What happens when a training job ends: its completion webhook (scheduler/training-finisher.ts). */
  training: z
    .object({
      webhook: z
        .object({
          /** HMAC-SHA256 key of the X-Interfleet-Signature header; jobs may name a webhook_url only when set. */
          secret: z.string().min(16, 'training.webhook.secret is at least 16 characters').optional(),
          /** Tries before the delivery is recorded as failed. */
          maxAttempts: z.number().int().min(1).max(20).default(5),
          /** Wait before the second try; doubled after each failed one. */
          backoffMs: z.number().int().min(0).default(1000),
          /** Most time one try may take. */
          timeoutMs: z.number().int().min(100).default(5000),
        })
        .prefault({}),
    })
    .prefault({}),
  /** The autoscaling loop and its actuator; each pool's policy is `pools[].autoscale`. */
  autoscaler: autoscalerConfigSchema,
  /** Storage adapters for file://, gs:// and oci:// (batch input and output). */
  storage: storageConfigSchema.prefault({}),
  /** Metrics beside /metrics: an optional OTLP export of the same registries (common/otlp-metrics.ts). */
  metrics: z
    .object({
      otlp: z
        .object({
          /**
           * OTLP/HTTP (protobuf) metrics endpoint, the whole URL (`http://collector:4318/v1/metrics`);
           * absent: no export. Env OTEL_EXPORTER_OTLP_METRICS_ENDPOINT.
           */
          endpoint: z.url({ protocol: /^https?$/, error: 'endpoint must be an http:// or https:// URL' }).optional(),
          /** How often every metric is exported (cumulative). */
          intervalMs: z.number().int().min(1000).default(60_000),
          /** Each export is abandoned after this long (the SDK retries a failed one with backoff). */
          timeoutMs: z.number().int().min(100).default(10_000),
          /** Sent with each export (a collector's or vendor's auth header). */
          headers: z.record(z.string(), z.string()).default({}),
          /** Added to the resource (service.name is the role, service.instance.id the process's). */
          resourceAttributes: z.record(z.string(), z.string()).default({}),
        })
        .prefault({}),
    })
    .prefault({}),
  log: z
    .object({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      pretty: z.boolean().optional(),
    })
    .prefault({}),
  pools: z
    .array(poolSchema)
    .min(1)
    // The embedded default autoscales (npm start's local actuator): one worker when idle, up to four
    // under load; local processes start in seconds, not a GPU pod's minutes.
    .prefault([{ name: 'default', autoscale: embeddedAutoscale }]),
});

export type Config = z.infer<typeof configSchema>;
export type PoolConfig = Config['pools'][number];
export type BackendKind = (typeof backendKinds)[number];

/** `paths`: a list separated by `:`, as PATH is. */
type EnvType = 'string' | 'number' | 'boolean' | 'paths';

/** Environment variables and the config path each one sets. */
const envPaths: Record<string, { path: string[]; type: EnvType }> = {
  REDIS_URL: { path: ['redis', 'url'], type: 'string' },
  REDIS_CLUSTER: { path: ['redis', 'cluster'], type: 'boolean' },
  INTERFLEET_PREFIX: { path: ['redis', 'prefix'], type: 'string' },
  HOST: { path: ['producer', 'host'], type: 'string' },
  PORT: { path: ['producer', 'port'], type: 'number' },
  INTERFLEET_BODY_LIMIT_BYTES: { path: ['producer', 'bodyLimitBytes'], type: 'number' },
  INTERFLEET_TIMEOUT_MS: { path: ['producer', 'defaultTimeoutMs'], type: 'number' },
  INTERFLEET_BOARD_READ_ONLY: { path: ['producer', 'boardReadOnly'], type: 'boolean' },
  INTERFLEET_AUTH: { path: ['producer', 'auth', 'mode'], type: 'string' },
  INTERFLEET_API_KEYS_FILE: { path: ['producer', 'auth', 'keysFile'], type: 'string' },
  INTERFLEET_API_KEYS: { path: ['producer', 'auth', 'keys'], type: 'string' },
  INTERFLEET_RATE_LIMIT: { path: ['producer', 'rateLimit', 'enabled'], type: 'boolean' },
  WORKER_POOL: { path: ['worker', 'pool'], type: 'string' },
  WORKER_METRICS_PORT: { path: ['worker', 'metricsPort'], type: 'number' },
  SCHEDULER_METRICS_PORT: { path: ['scheduler', 'metricsPort'], type: 'number' },
  WORKER_METRICS_HOST: { path: ['worker', 'metricsHost'], type: 'string' },
  WORKER_SHUTDOWN_GRACE_MS: { path: ['worker', 'shutdownGraceMs'], type: 'number' },
  INTERFLEET_BATCH_CHUNK_LINES: { path: ['batch', 'chunkLines'], type: 'number' },
  INTERFLEET_BATCH_WINDOW: { path: ['batch', 'windowPerPool'], type: 'number' },
  INTERFLEET_LOCAL_WORKERS: { path: ['launcher', 'workers'], type: 'number' },
  INTERFLEET_DATA_DIR: { path: ['launcher', 'dataDir'], type: 'string' },
  INTERFLEET_FILE_ROOTS: { path: ['storage', 'file', 'roots'], type: 'paths' },
  INTERFLEET_REDIS_DIR: { path: ['launcher', 'redis', 'dataDir'], type: 'string' },
  INTERFLEET_REDIS_FSYNC: { path: ['launcher', 'redis', 'appendfsync'], type: 'string' },
  INTERFLEET_REDIS_EVICTION_CHECK: { path: ['redis', 'evictionCheck'], type: 'string' },
  INTERFLEET_WEBHOOK_SECRET: { path: ['training', 'webhook', 'secret'], type: 'string' },
  INTERFLEET_AUTOSCALER_ACTUATOR: { path: ['autoscaler', 'actuator'], type: 'string' },
  LOG_LEVEL: { path: ['log', 'level'], type: 'string' },
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: { path: ['metrics', 'otlp', 'endpoint'], type: 'string' },
  GOOGLE_CLOUD_PROJECT: { path: ['storage', 'gcs', 'projectId'], type: 'string' },
  OCI_REGION: { path: ['storage', 'oci', 'region'], type: 'string' },
  OCI_AUTH: { path: ['storage', 'oci', 'auth'], type: 'string' },
};

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n  - ${issues.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    node = (typeof next === 'object' && next !== null ? next : (node[key] = {})) as Record<string, unknown>;
  }
  node[path.at(-1)!] = value;
}

function envValue(name: string, raw: string, type: EnvType): unknown {
  if (type === 'string') return raw;
  if (type === 'paths') return raw.split(':').filter((p) => p !== '');
  if (type === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError([`${name}: expected a number, got "${raw}"`]);
    return n;
  }
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError([`${name}: expected true or false, got "${raw}"`]);
}

/**
 * Builds the typed config from a YAML text (or none) and the environment;
 * environment variables win over the file. Reports every problem at once.
 */
export function parseConfig(env: NodeJS.ProcessEnv, fileText?: string, source = 'config'): Config {
  let raw: Record<string, unknown> = {};
  if (fileText !== undefined && fileText.trim() !== '') {
    const doc: unknown = parseYaml(fileText);
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new ConfigError([`${source}: expected a YAML mapping at the top level`]);
    }
    raw = doc as Record<string, unknown>;
  }
  // Production (the container image sets NODE_ENV) refuses an evicting Redis unless told otherwise.
  if (env.NODE_ENV === 'production') {
    const redis = raw.redis;
    if (typeof redis !== 'object' || redis === null || !('evictionCheck' in redis)) {
      setPath(raw, ['redis', 'evictionCheck'], 'refuse');
    }
  }
  // `producer.auth: none` is short for `{ mode: none }`; expanded first so that env vars add to it.
  const producerRaw = raw.producer;
  if (typeof producerRaw === 'object' && producerRaw !== null && 'auth' in producerRaw) {
    const auth = (producerRaw as Record<string, unknown>).auth;
    if (typeof auth === 'string') setPath(raw, ['producer', 'auth'], { mode: auth });
  }
  for (const [name, spec] of Object.entries(envPaths)) {
    const value = env[name];
    if (value !== undefined && value !== '') setPath(raw, spec.path, envValue(name, value, spec.type));
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const config = result.data;
  const names = config.pools.map((p) => p.name);
  const dupes = names.filter((n, i) => names.indexOf(n) !== i);
  if (dupes.length > 0) throw new ConfigError([`pools: duplicate pool name(s) ${[...new Set(dupes)].join(', ')}`]);
  const problems: string[] = [];
  config.batch.schedules.forEach((s, i) => {
    if (!names.includes(s.model)) problems.push(`batch.schedules.${i}.model: "${s.model}" is not a configured pool`);
    if (config.batch.schedules.findIndex((o) => o.name === s.name) !== i) {
      problems.push(`batch.schedules.${i}.name: "${s.name}" is used twice`);
    }
    // The API's rule for completion_window, checked now rather than refused at every firing.
    const window = parseDuration(s.completionWindow)!;
    if (window <= 0 || window > config.batch.maxCompletionWindowMs) {
      problems.push(
        `batch.schedules.${i}.completionWindow: "${s.completionWindow}" must be positive and at most batch.maxCompletionWindowMs (${config.batch.maxCompletionWindowMs} ms)`,
      );
    }
  });
  if (problems.length > 0) throw new ConfigError(problems);
  if (config.worker.pool !== undefined && !names.includes(config.worker.pool)) {
    throw new ConfigError([`worker.pool: "${config.worker.pool}" is not a configured pool (${names.join(', ')})`]);
  }
  return config;
}

/** Reads INTERFLEET_CONFIG (if set) and the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.INTERFLEET_CONFIG;
  let text: string | undefined;
  if (file) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`INTERFLEET_CONFIG: cannot read ${file}: ${(err as Error).message}`]);
    }
  }
  return parseConfig(env, text, file ?? 'config');
}

export function findPool(config: Config, name: string): PoolConfig | undefined {
  return config.pools.find((p) => p.name === name);
}
