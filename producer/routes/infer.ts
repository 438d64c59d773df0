/**
 * Native task API `POST /v1/infer`: chat, sentiment and summarize with a
 * per-request timeout. With `stream: true` (chat), deltas arrive as
 * server-sent events `delta`, then one `done` (or `error`).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { inferRequestSchema, TIMEOUT_HEADER } from '../../common/contracts/api.ts';
import { FleetError } from '../../common/errors.ts';
import type { TrainedModelRegistry } from '../../common/training/trained-model-registry.ts';
import { callerGone, errorBody } from '../http-errors.ts';
import type { RealtimeService } from '../realtime-service.ts';
import { streamReplies } from '../sse.ts';
import { parseTimeoutHeader } from './timeout-header.ts';

const sentimentLabels = ['positive', 'negative', 'neutral'];

/** A sentiment input naming a trained model: refused here when the name is unknown or its classes are not sentiment labels. */
async function checkTrainedModel(models: Pick<TrainedModelRegistry, 'get'>, name: string): Promise<void> {
  let model;
  try {
    model = await models.get(name);
  } catch (err) {
    throw new FleetError('unavailable', `the trained model registry could not be read: ${String(err)}`, { cause: err });
  }
  if (!model)
    throw new FleetError('model_not_found', `No trained model named '${name}' (GET /v1/trained-models lists them)`, {
      param: 'input.model',
    });
  const odd = (model.classes ?? []).filter((c) => !sentimentLabels.includes(c));
  if (model.classes === null || odd.length > 0)
    throw new FleetError(
      'bad_request',
      `trained model '${name}' has classes ${JSON.stringify(model.classes)}; the sentiment task needs positive, negative or neutral`,
      { param: 'input.model' },
    );
}

export const inferRoute =
  (service: RealtimeService, models?: Pick<TrainedModelRegistry, 'get'>): FastifyPluginAsyncZod =>
  async (app) => {
    app.post('/v1/infer', { schema: { body: inferRequestSchema } }, async (request, reply) => {
      const body = request.body;
      if (body.stream && body.input.task !== 'chat') {
        throw new FleetError('bad_request', 'stream is only supported for task chat', { param: 'stream' });
      }
      if (body.input.task === 'sentiment' && body.input.model !== undefined && models)
        await checkTrainedModel(models, body.input.model);
      const pending = await service.submit({
        pool: body.model,
        input: body.input,
        stream: body.stream,
        timeoutMs: body.timeout_ms ?? parseTimeoutHeader(request.headers[TIMEOUT_HEADER]),
        signal: callerGone(reply),
      });
      reply.header('x-request-id', pending.requestId);
      if (!body.stream) {
        const done = await pending.result();
        return reply.send({ id: pending.requestId, model: body.model, output: done.output, timings: done.timings });
      }

      return streamReplies(reply, pending, {
        reply(sse, r) {
          if (r.k === 'delta') sse.send({ text: r.text }, 'delta');
          else sse.send({ id: pending.requestId, model: body.model, output: r.output, timings: r.timings }, 'done');
        },
        end: (sse) => sse.end(),
        error: (sse, err) => sse.send(errorBody(err), 'error'),
      });
    });
  };
