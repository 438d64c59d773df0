/**
 * What an ended training job leaves behind, and where it is kept: the
 * manifest (built here, purely, from the gang's state and rank records plus
 * what the results job measured), the webhook's delivery record, and the
 * pool's `finishing` set of ended jobs whose results are not settled yet.
 * The manifest and the delivery record are fields of the gang's state hash,
 * so GET /v1/training/jobs/:id shows them beside the rest.
 */
import {
  trainingManifestSchema,
  webhookDeliverySchema,
  type Artifact,
  type Evaluation,
  type RoundSummary,
  type TrainingManifest,
  type WebhookDelivery,
} from '../contracts/trained-models.ts';
import { checkpointUriFor, modelUriFor, type TrainingSpec } from '../contracts/training.ts';
import type { RedisClient } from '../redis.ts';
import { trainingKeys } from '../topology.ts';
import type { RankEntry, TrainingState } from './training-state.ts';

const seconds = (ms: number | null): number | null => (ms === null ? null : Math.floor(ms / 1000));

/**
 * The final model: the last round's reduced model (`rounds`), or rank 0's last checkpoint (`gang`, as
 * torchrun's rank 0 saves), written by the gang's last run (`restarts` so far) of that round.
 */
export function artifactUriFor(spec: TrainingSpec, round: number, restarts: number): string {
  return spec.mode === 'rounds'
    ? modelUriFor(spec.checkpointPrefix, round)
    : checkpointUriFor(spec.checkpointPrefix, round, 0, restarts);
}

export const manifestUriFor = (spec: TrainingSpec): string => `${spec.checkpointPrefix}manifest.json`;

/** Rounds that completed: every round before the current one, and the last too once the job succeeded. */
export const roundsCompleted = (state: TrainingState): number =>
  state.status === 'succeeded' ? state.round : Math.max(0, state.round - 1);

/** Per-round summaries from the ranks' records: mean of each metric's last value over the ranks. */
export function summarizeRounds(ranks: readonly RankEntry[]): RoundSummary[] {
  // One record per rank and round: a gang restart clears its round's records (training-state.ts).
  const byRound = new Map<number, RankEntry[]>();
  for (const r of ranks) byRound.set(r.round, [...(byRound.get(r.round) ?? []), r]);
  return [...byRound.entries()]
    .sort(([a], [b]) => a - b)
    .map(([round, entries]) => {
      const sums = new Map<string, { sum: number; n: number }>();
      for (const e of entries)
        for (const [k, v] of Object.entries(e.metrics)) {
          const s = sums.get(k) ?? { sum: 0, n: 0 };
          sums.set(k, { sum: s.sum + v, n: s.n + 1 });
        }
      const starts = entries.map((e) => e.startedAt);
      const ends = entries.map((e) => e.endedAt).filter((t): t is number => t !== null);
      const startedAt = starts.length > 0 ? Math.min(...starts) : null;
      const endedAt = ends.length === entries.length && ends.length > 0 ? Math.max(...ends) : null;
      const rankMetrics: Record<string, number>[] = [];
      for (const e of entries) rankMetrics[e.rank] = e.metrics;
      return {
        round,
        ranks: entries.length,
        ranks_succeeded: entries.filter((e) => e.state === 'succeeded').length,
        started_at: seconds(startedAt),
        ended_at: seconds(endedAt),
        duration_ms: startedAt !== null && endedAt !== null ? endedAt - startedAt : null,
        metrics: Object.fromEntries([...sums].map(([k, { sum, n }]) => [k, sum / n])),
        rank_metrics: Array.from(rankMetrics, (m) => m ?? {}),
      };
    });
}

export interface ManifestInputs {
  state: TrainingState;
  ranks: readonly RankEntry[];
  artifact: Artifact | null;
  evaluation: Evaluation | null;
  evaluationError: string | null;
  /** The name registered (null: none). */
  modelName: string | null;
  now: number;
}

export function buildManifest(i: ManifestInputs): TrainingManifest {
  const { spec, status } = i.state;
  if (status !== 'succeeded' && status !== 'failed' && status !== 'cancelled')
    throw new Error(`training job ${spec.id} is ${status}, not ended`);
  return trainingManifestSchema.parse({
    object: 'training.manifest',
    job_id: spec.id,
    pool: spec.pool,
    status,
    error: i.state.reason,
    mode: spec.mode,
    workers: spec.workers,
    rounds: spec.rounds,
    rounds_completed: roundsCompleted(i.state),
    created_at: seconds(spec.createdAt),
    ended_at: seconds(i.state.endedAt),
    per_round: summarizeRounds(i.ranks),
    artifact: i.artifact,
    evaluation: i.evaluation,
    evaluation_error: i.evaluationError,
    model_name: i.modelName,
    manifest_uri: manifestUriFor(spec),
    written_at: seconds(i.now),
  });
}

export interface JobResults {
  manifest: TrainingManifest | null;
  /** Why the results job failed for good (no manifest then). */
  resultsError: string | null;
  webhook: WebhookDelivery | null;
}

export function decodeResults(raw: Record<string, string | undefined>): JobResults {
  return {
    manifest: raw.manifest ? trainingManifestSchema.parse(JSON.parse(raw.manifest)) : null,
    resultsError: raw.results_error || null,
    webhook: raw.webhook ? webhookDeliverySchema.parse(JSON.parse(raw.webhook)) : null,
  };
}

/** Results I/O: fields of the gang's state hash and the pool's finishing set, all in the pool's slot. */
export class TrainingResultsStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private keys(pool: string) {
    return trainingKeys(this.prefix, pool);
  }

  /** An ended gang waits here until its manifest and webhook are settled (NX: a repeat keeps its place). */
  async markFinishing(pool: string, jobId: string, at: number): Promise<void> {
    await this.redis.zadd(this.keys(pool).finishing, 'NX', at, jobId);
  }

  async finishingIds(pool: string): Promise<string[]> {
    return this.redis.zrange(this.keys(pool).finishing, '0', '-1');
  }

  async finished(pool: string, jobId: string): Promise<void> {
    await this.redis.zrem(this.keys(pool).finishing, jobId);
  }

  async get(pool: string, jobId: string): Promise<JobResults> {
    const [manifest, resultsError, webhook] = await this.redis.hmget(
      this.keys(pool).state(jobId),
      'manifest',
      'results_error',
      'webhook',
    );
    return decodeResults({
      manifest: manifest ?? undefined,
      results_error: resultsError ?? undefined,
      webhook: webhook ?? undefined,
    });
  }

  async setManifest(pool: string, jobId: string, manifest: TrainingManifest): Promise<void> {
    await this.redis.hset(
      this.keys(pool).state(jobId),
      'manifest',
      JSON.stringify(trainingManifestSchema.parse(manifest)),
    );
  }

  async setResultsError(pool: string, jobId: string, reason: string): Promise<void> {
    await this.redis.hset(this.keys(pool).state(jobId), 'results_error', reason);
  }

  async setWebhook(pool: string, jobId: string, delivery: WebhookDelivery): Promise<void> {
    await this.redis.hset(
      this.keys(pool).state(jobId),
      'webhook',
      JSON.stringify(webhookDeliverySchema.parse(delivery)),
    );
  }
}
