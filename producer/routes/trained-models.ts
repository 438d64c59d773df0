/**
 * The registry of trained models: `GET /v1/trained-models` (every model, by
 * name) and `GET /v1/trained-models/:name` (one: where it is, its checksum,
 * the job that trained it and what it scored on the job's held-out split).
 * A job that succeeds with a `model_name` registers its final model; a
 * `sentiment` request names it with `input.model`.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../common/config.ts';
import { trainedModelNameSchema, type TrainedModel } from '../../common/contracts/trained-models.ts';
import { FleetError } from '../../common/errors.ts';
import type { RedisClient } from '../../common/redis.ts';
import { TrainedModelRegistry } from '../../common/training/trained-model-registry.ts';

const paramsSchema = z.object({ name: trainedModelNameSchema });

export const toApiTrainedModel = (m: TrainedModel) => ({ object: 'trained_model', ...m });

export const trainedModelsRoutes =
  (config: Config, redis: RedisClient): FastifyPluginAsyncZod =>
  async (app) => {
    const registry = new TrainedModelRegistry(redis, config.redis.prefix);

    app.get('/v1/trained-models', async () => ({
      object: 'list',
      data: (await registry.list()).map(toApiTrainedModel),
    }));

    app.get('/v1/trained-models/:name', { schema: { params: paramsSchema } }, async (request) => {
      const model = await registry.get(request.params.name);
      if (!model)
        throw new FleetError('not_found', `No trained model named '${request.params.name}'`, { param: 'name' });
      return toApiTrainedModel(model);
    });
  };
