/**
 * Submits real-time requests: admission, enqueue on `rt.<pool>`, and the
 * wait for replies on this replica's inbox, under the request's deadline.
 * Costs one Redis round trip per request on the way in (the BullMQ add);
 * replies arrive on the inbox reader that is already blocked waiting.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { backendTasks } from '../common/backend-tasks.ts';
import type { Config, PoolConfig } from '../common/config.ts';
import { REALTIME_JOB_NAME, type RealtimeJob } from '../common/contracts/realtime.ts';
import type { TaskInput } from '../common/contracts/tasks.ts';
import { FleetError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { RedisClient } from '../common/redis.ts';
import { cancelChannel } from '../common/topology.ts';
import { decideAdmission } from './admission.ts';
import type { DepthMonitor } from './depth-monitor.ts';
import type { ProducerMetrics } from './metrics.ts';
import { PendingRequest, type EndReason } from './pending-request.ts';
import type { ReplyInbox } from './reply-inbox.ts';

export interface SubmitParams {
  pool: string;
  input: TaskInput;
  stream: boolean;
  timeoutMs?: number | undefined;
  /** Aborts when the caller goes away. */
  signal?: AbortSignal | undefined;
}

export interface RealtimeServiceDeps {
  config: Config;
  queues: ReadonlyMap<string, Queue>;
  redis: RedisClient;
  inbox: ReplyInbox;
  depth: DepthMonitor;
  metrics: ProducerMetrics;
  logger: Logger;
  now?: () => number;
}

export class RealtimeService {
  private readonly pending = new Set<PendingRequest>();
  private readonly inFlightByPool = new Map<string, number>();
  private accepting = true;
  private readonly now: () => number;

  constructor(private readonly deps: RealtimeServiceDeps) {
    this.now = deps.now ?? Date.now;
  }

  pool(name: string): PoolConfig {
    const pool = this.deps.config.pools.find((p) => p.name === name);
    if (!pool) {
      const known = this.deps.config.pools.map((p) => p.name).join(', ');
      throw new FleetError('model_not_found', `The model '${name}' does not exist; available: ${known}`, {
        param: 'model',
      });
    }
    return pool;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  async submit(params: SubmitParams): Promise<PendingRequest> {
    const { config, queues, inbox, depth, metrics } = this.deps;
    const retryAfterMs = config.producer.retryAfterMs;
    if (!this.accepting) throw new FleetError('unavailable', 'this producer is shutting down', { retryAfterMs });
    const pool = this.pool(params.pool);
    if (!backendTasks[pool.backend].includes(params.input.task)) {
      throw new FleetError(
        'unsupported_task',
        `pool '${pool.name}' (${pool.backend}) cannot run task '${params.input.task}'`,
      );
    }
    const decision = decideAdmission({
      ...depth.sample(pool.name),
      localInFlight: this.inFlightByPool.get(pool.name) ?? 0,
      maxWaiting: pool.maxWaiting,
    });
    if (!decision.admit) {
      metrics.rejected.inc({ pool: pool.name, reason: decision.reason });
      throw new FleetError(
        'overloaded',
        `pool '${pool.name}' has ${decision.estimatedWaiting} requests waiting (limit ${pool.maxWaiting})`,
        {
          retryAfterMs,
        },
      );
    }

    const timeoutMs = params.timeoutMs ?? config.producer.defaultTimeoutMs;
    if (timeoutMs > config.producer.maxTimeoutMs) {
      throw new FleetError(
        'bad_request',
        `timeout ${timeoutMs} ms is over the limit of ${config.producer.maxTimeoutMs} ms`,
        {
          param: 'timeout_ms',
        },
      );
    }
    const enqueuedAt = this.now();
    const job: RealtimeJob = {
      requestId: randomUUID(),
      replyTo: inbox.key,
      deadlineAt: enqueuedAt + timeoutMs,
      enqueuedAt,
      stream: params.stream,
      input: params.input,
    };
    const queue = queues.get(pool.name)!;
    // Starts before the add: the deadline runs from enqueuedAt, whatever the add costs.
    const timer = setTimeout(
      () =>
        request.fail('deadline', new FleetError('deadline_exceeded', `no answer within the ${timeoutMs} ms deadline`)),
      timeoutMs,
    );
    const onAbort = (): void =>
      request.fail('aborted', new FleetError('cancelled', 'the caller closed the connection'));

    const request = new PendingRequest(job.requestId, pool.name, job.deadlineAt, (reason) => {
      clearTimeout(timer);
      params.signal?.removeEventListener('abort', onAbort);
      inbox.unregister(job.requestId);
      this.pending.delete(request);
      this.inFlightByPool.set(pool.name, (this.inFlightByPool.get(pool.name) ?? 1) - 1);
      metrics.latency.observe(
        { pool: pool.name, task: job.input.task, outcome: reason },
        (this.now() - enqueuedAt) / 1000,
      );
      metrics.inFlight.dec({ pool: pool.name });
      if (reason === 'deadline' || reason === 'aborted') void this.withdraw(queue, job.requestId, reason);
    });
    // Register before the add: a fast worker can answer before `add` returns.
    inbox.register(job.requestId, (reply) => request.push(reply));
    this.pending.add(request);
    this.inFlightByPool.set(pool.name, (this.inFlightByPool.get(pool.name) ?? 0) + 1);
    metrics.inFlight.inc({ pool: pool.name });
    // Counted before the add so that concurrent requests see each other at admission.
    depth.added(pool.name);
    try {
      await queue.add(REALTIME_JOB_NAME, job, { jobId: job.requestId, attempts: 1 });
    } catch (err) {
      depth.added(pool.name, -1);
      request.fail(
        'error',
        new FleetError('unavailable', 'the job queue (Redis) is unreachable', { cause: err, retryAfterMs }),
      );
      this.deps.logger.warn({ err, pool: pool.name }, 'enqueue failed');
      throw new FleetError('unavailable', 'the job queue (Redis) is unreachable; try again shortly', {
        cause: err,
        retryAfterMs,
      });
    }
    if (params.signal?.aborted) onAbort();
    else params.signal?.addEventListener('abort', onAbort, { once: true });
    return request;
  }

  /**
   * Takes back a request nobody waits for: removes it if still queued (a no-op
   * once a worker holds its lock) and tells workers to abort it if running.
   */
  private async withdraw(queue: Queue, requestId: string, reason: EndReason): Promise<void> {
    try {
      await Promise.all([
        queue.remove(requestId),
        this.deps.redis.publish(cancelChannel(this.deps.config.redis.prefix), requestId),
      ]);
    } catch (err) {
      this.deps.logger.debug({ err, requestId, reason }, 'could not withdraw request');
    }
  }

  /** Stops accepting; waits for accepted requests to finish, up to `graceMs`. */
  async drain(graceMs: number): Promise<void> {
    this.accepting = false;
    const until = this.now() + graceMs;
    while (this.pending.size > 0 && this.now() < until) await new Promise((r) => setTimeout(r, 50));
    for (const request of this.pending) {
      request.fail(
        'aborted',
        new FleetError('unavailable', 'the producer shut down before the answer came', { retryAfterMs: 0 }),
      );
    }
  }
}
