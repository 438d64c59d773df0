/**
 * OpenAI-compatible Batch API: `POST /v1/batches`, `GET /v1/batches/:id`,
 * `GET /v1/batches` (newest first, cursor `after`) and
 * `POST /v1/batches/:id/cancel`. Inputs and outputs are storage URIs where
 * OpenAI has file ids, so `client.batches.*` of the official SDK works.
 */
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import {
  batchCreateBodySchema,
  batchIdParamsSchema,
  batchListQuerySchema,
  toApiBatch,
  type BatchList,
} from '../../common/contracts/batch-api.ts';
import { BatchConflictError, type BatchService } from '../batch/batch-service.ts';
import type { OpenAIErrorBody } from '../http-errors.ts';

/*
 * 404 and 409 have no code in common/errors.ts yet, so these two answers are
 * written here, in the same OpenAI shape errorBody() gives every other error.
 */
function notFound(reply: FastifyReply, batchId: string): FastifyReply {
  const body: OpenAIErrorBody = {
    error: {
      message: `No batch found with id '${batchId}'`,
      type: 'not_found_error',
      param: 'batch_id',
      code: 'not_found',
    },
  };
  return reply.code(404).send(body);
}

function conflict(reply: FastifyReply, err: BatchConflictError): FastifyReply {
  const body: OpenAIErrorBody = {
    error: { message: err.message, type: 'invalid_request_error', param: null, code: err.code },
  };
  return reply.code(409).send(body);
}

export const batchRoutes =
  (batches: BatchService): FastifyPluginAsyncZod =>
  async (app) => {
    app.post('/v1/batches', { schema: { body: batchCreateBodySchema } }, async (request) =>
      toApiBatch(await batches.create(request.body)),
    );

    app.get('/v1/batches', { schema: { querystring: batchListQuerySchema } }, async (request): Promise<BatchList> => {
      const { batches: page, hasMore } = await batches.list(request.query.limit, request.query.after);
      const data = page.map(toApiBatch);
      return {
        object: 'list',
        data,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
        has_more: hasMore,
      };
    });

    app.get('/v1/batches/:batch_id', { schema: { params: batchIdParamsSchema } }, async (request, reply) => {
      const state = await batches.get(request.params.batch_id);
      return state ? toApiBatch(state) : notFound(reply, request.params.batch_id);
    });

    app.post('/v1/batches/:batch_id/cancel', { schema: { params: batchIdParamsSchema } }, async (request, reply) => {
      try {
        const state = await batches.cancel(request.params.batch_id);
        return state ? toApiBatch(state) : notFound(reply, request.params.batch_id);
      } catch (err) {
        if (err instanceof BatchConflictError) return conflict(reply, err);
        throw err;
      }
    });
  };
