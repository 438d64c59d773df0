/**
 * What the leader does once a training job has ended (succeeded, failed or
 * cancelled): the job waits in its pool's `finishing` set until
 *   1. its results are written: a `finish` job on `train.<pool>` (one per
 *      job; a worker evaluates the final model from storage, writes the
 *      manifest beside the checkpoints and registers the model), and
 *   2. its completion webhook, if it named one, is delivered or has failed
 *      for good: a signed POST (webhook-signature.ts) tried up to
 *      `training.webhook.maxAttempts` times, the wait doubling from
 *      `backoffMs`, each try recorded in the job (`webhook`), so a delivery
 *      is never dropped silently, and a new leader carries on from the
 *      record (at least once: receivers drop repeats by X-Interfleet-Delivery).
 * Tries run beside the passes (never blocking admission), one per job at a
 * time. The job's end is also counted on /metrics (status, rounds, round
 * times); its held-out accuracy sets the pool's last-accuracy gauge.
 */
import type { Queue } from 'bullmq';
import type { Config } from '../common/config.ts';
import { FINISH_JOB_NAME, type FinishJob } from '../common/contracts/training.ts';
import type { WebhookDelivery } from '../common/contracts/trained-models.ts';
import type { Logger } from '../common/logger.ts';
import { PoolQueues } from '../common/pool-queues.ts';
import type { RedisClient } from '../common/redis.ts';
import { finishJobId } from '../common/topology.ts';
import { roundsCompleted, summarizeRounds, TrainingResultsStore } from '../common/training/training-results.ts';
import { TrainingStore, type TrainingState } from '../common/training/training-state.ts';
import {
  DELIVERY_HEADER,
  EVENT_HEADER,
  SIGNATURE_HEADER,
  signWebhook,
  WEBHOOK_EVENT,
} from '../common/training/webhook-signature.ts';
import type { SchedulerMetrics } from './metrics.ts';

export interface TrainingFinisherDeps {
  redis: RedisClient;
  prefix: string;
  pools: readonly { name: string }[];
  webhook: Config['training']['webhook'];
  metrics: SchedulerMetrics;
  logger: Logger;
  now: () => number;
  /** The HTTP client deliveries use (global fetch by default). */
  fetch?: typeof fetch;
}

/** The next try's time after `attempts` failed ones: backoffMs, doubling. */
export function nextAttemptAt(now: number, attempts: number, backoffMs: number): number {
  return now + backoffMs * 2 ** Math.max(0, attempts - 1);
}

/** The webhook body: the job's outcome, as GET /v1/training/jobs/:id names those fields. */
export function webhookPayload(state: TrainingState, manifest: unknown, manifestError: string | null) {
  const { spec } = state;
  const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));
  return {
    type: WEBHOOK_EVENT,
    job: {
      id: spec.id,
      object: 'training.job',
      pool: spec.pool,
      tenant: spec.tenant,
      status: state.status,
      error: state.reason,
      round: state.round,
      rounds: spec.rounds,
      workers: spec.workers,
      mode: spec.mode,
      checkpoint_uri: spec.checkpointPrefix,
      eval_uri: spec.evalUri ?? null,
      model_name: spec.modelName ?? null,
      created_at: seconds(spec.createdAt),
      ended_at: seconds(state.endedAt),
      manifest,
      manifest_error: manifestError,
    },
  };
}

export class TrainingFinisher {
  private readonly store: TrainingStore;
  private readonly results: TrainingResultsStore;
  private readonly queues: PoolQueues;
  /** Deliveries being tried now, by job id. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly deps: TrainingFinisherDeps) {
    this.store = new TrainingStore(deps.redis, deps.prefix);
    this.queues = new PoolQueues('train', deps.redis, deps.prefix);
    this.results = new TrainingResultsStore(deps.redis, deps.prefix);
  }

  /** A job has ended (the training loop winds it up): its results are due, and its end is counted. */
  async begin(gang: TrainingState): Promise<void> {
    const { spec } = gang;
    await this.results.markFinishing(spec.pool, spec.id, gang.endedAt ?? this.deps.now());
    const { metrics } = this.deps;
    metrics.trainingJobsEnded.inc({ pool: spec.pool, status: gang.status });
    const done = roundsCompleted(gang);
    metrics.trainingRoundsCompleted.inc({ pool: spec.pool }, done);
    for (const r of summarizeRounds(await this.store.ranks(spec.pool, spec.id)))
      if (r.round <= done && r.duration_ms !== null)
        metrics.trainingRoundSeconds.observe({ pool: spec.pool }, r.duration_ms / 1000);
  }

  /** One pass over every pool's ended jobs. */
  async pass(): Promise<void> {
    for (const { name } of this.deps.pools) {
      for (const id of await this.results.finishingIds(name)) {
        try {
          await this.step(name, id);
        } catch (err) {
          this.deps.logger.warn(
            { err, trainingJob: id, pool: name },
            'training results step failed; retried next pass',
          );
        }
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.inFlight.values());
    await this.queues.close();
  }

  private queue(pool: string): Queue {
    return this.queues.get(pool);
  }

  private async step(pool: string, id: string): Promise<void> {
    const { logger, metrics } = this.deps;
    const state = await this.store.get(pool, id);
    if (!state) {
      await this.results.finished(pool, id);
      return;
    }
    const results = await this.results.get(pool, id);
    if (!results.manifest && !results.resultsError) {
      const queue = this.queue(pool);
      const job = await queue.getJob(finishJobId(id));
      if (!job) {
        const data: FinishJob = { jobId: id, pool };
        await queue.add(FINISH_JOB_NAME, data, {
          jobId: finishJobId(id),
          attempts: 3,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: 86_400 },
          removeOnFail: { age: 7 * 86_400 },
        });
        logger.info({ trainingJob: id, pool }, 'training job ended; results job added');
      } else if ((await job.getState()) === 'failed') {
        const reason = `the results job failed: ${job.failedReason ?? 'unknown reason'}`;
        await this.results.setResultsError(pool, id, reason);
        logger.warn({ trainingJob: id, reason }, 'training results not written');
      }
      return;
    }
    const accuracy = results.manifest?.evaluation?.accuracy;
    if (accuracy !== undefined) metrics.trainingLastEvalAccuracy.set({ pool }, accuracy);
    const url = state.spec.webhookUrl ?? null;
    const delivery = results.webhook;
    if (url === null || delivery?.status === 'delivered' || delivery?.status === 'failed') {
      await this.results.finished(pool, id);
      return;
    }
    const now = this.deps.now();
    if (this.inFlight.has(id) || (delivery?.next_attempt_at ?? 0) > now) return;
    const attempt = this.deliver(state, url, delivery, results.manifest, results.resultsError).finally(() =>
      this.inFlight.delete(id),
    );
    this.inFlight.set(id, attempt);
  }

  /** One try, recorded; the last allowed try that fails records the delivery as failed. */
  private async deliver(
    state: TrainingState,
    url: string,
    before: WebhookDelivery | null,
    manifest: unknown,
    manifestError: string | null,
  ): Promise<void> {
    const { webhook, logger, metrics } = this.deps;
    const { spec } = state;
    const body = JSON.stringify(webhookPayload(state, manifest, manifestError));
    const attempts = (before?.attempts ?? 0) + 1;
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const res = await (this.deps.fetch ?? fetch)(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [EVENT_HEADER]: WEBHOOK_EVENT,
          [DELIVERY_HEADER]: spec.id,
          [SIGNATURE_HEADER]: signWebhook(webhook.secret ?? '', body, Math.floor(this.deps.now() / 1000)),
        },
        body,
        signal: AbortSignal.timeout(webhook.timeoutMs),
        redirect: 'manual',
      });
      statusCode = res.status;
      await res.body?.cancel();
      if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
    } catch (err) {
      error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
    const now = this.deps.now();
    const delivered = error === null;
    const gaveUp = !delivered && attempts >= webhook.maxAttempts;
    const record: WebhookDelivery = {
      url,
      status: delivered ? 'delivered' : gaveUp ? 'failed' : 'pending',
      attempts,
      last_status_code: statusCode,
      last_error: error,
      next_attempt_at: delivered || gaveUp ? null : nextAttemptAt(now, attempts, webhook.backoffMs),
      delivered_at: delivered ? Math.floor(now / 1000) : null,
    };
    try {
      await this.results.setWebhook(spec.pool, spec.id, record);
    } catch (err) {
      logger.warn({ err, trainingJob: spec.id }, 'webhook delivery not recorded; tried again next pass');
      return;
    }
    metrics.trainingWebhookDeliveries.inc({
      pool: spec.pool,
      outcome: delivered ? 'delivered' : gaveUp ? 'failed' : 'retry',
    });
    const log = { trainingJob: spec.id, url, attempts, statusCode, error };
    if (delivered) logger.info(log, 'completion webhook delivered');
    else if (gaveUp) logger.warn(log, 'completion webhook failed for good');
    else
      logger.info({ ...log, nextAttemptAt: record.next_attempt_at }, 'completion webhook attempt failed; will retry');
  }
}
