/**
 * The registry of trained models: one Redis hash under the configured prefix,
 * name → JSON TrainedModel. A job that succeeds with a `model_name` registers
 * its final model there (the worker that ran its results job); the producer
 * reads it to refuse unknown names, and workers read it on each request that
 * names a model, so a name re-registered to other bytes is served at once.
 * Re-registering a name replaces its entry (the newest job wins).
 */
import { trainedModelSchema, type TrainedModel } from '../contracts/trained-models.ts';
import type { RedisClient } from '../redis.ts';
import { trainedModelsKey } from '../topology.ts';

export class TrainedModelRegistry {
  private readonly key: string;

  constructor(
    private readonly redis: Pick<RedisClient, 'hset' | 'hget' | 'hgetall' | 'hmget'>,
    prefix: string,
  ) {
    this.key = trainedModelsKey(prefix);
  }

  async register(model: TrainedModel): Promise<void> {
    const valid = trainedModelSchema.parse(model);
    await this.redis.hset(this.key, valid.name, JSON.stringify(valid));
  }

  async get(name: string): Promise<TrainedModel | undefined> {
    const raw = await this.redis.hget(this.key, name);
    return raw === null ? undefined : trainedModelSchema.parse(JSON.parse(raw));
  }

  /** Several names in one round trip (a bulk micro-batch); missing names are absent from the map. */
  async getMany(names: readonly string[]): Promise<Map<string, TrainedModel>> {
    const out = new Map<string, TrainedModel>();
    if (names.length === 0) return out;
    const raw = await this.redis.hmget(this.key, ...names);
    raw.forEach((json, i) => {
      if (json !== null) out.set(names[i]!, trainedModelSchema.parse(JSON.parse(json)));
    });
    return out;
  }

  /** Every registered model, by name. */
  async list(): Promise<TrainedModel[]> {
    const raw = await this.redis.hgetall(this.key);
    return Object.values(raw)
      .map((json) => trainedModelSchema.parse(JSON.parse(json)))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
