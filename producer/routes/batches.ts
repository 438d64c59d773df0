/**
 * OpenAI-compatible Batch API: `POST /v1/batches`, `GET /v1/batches/:id`,
 * `GET /v1/batches` (newest first, cursor `after`) and
 * `POST /v1/batches/:id/cancel`. Inputs and outputs are storage URIs where
 * OpenAI has file ids, so `client.batches.*` of the official SDK works.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  batchCreateBodySchema,
  batchIdParamsSchema,
  batchListQuerySchema,
  toApiBatch,
  type BatchList,
} from '../../common/contracts/batch-api.ts';
import { FleetError } from '../../common/errors.ts';
import type { BatchService } from '../batch/batch-service.ts';
import { canSee, jobTenant, listTenant, principalOf } from '../auth/index.ts';

/**
 * Optional: a caller that retries (Cloud Scheduler, a Cloud Function, a service) sends the same key
 * on every try, so a retry never starts a second batch.
 */
const idempotencyKeySchema = z
  .string()
  .min(1, 'must not be empty')
  .max(255, 'at most 255 characters')
  .regex(/^[\x21-\x7e]+$/, 'visible ASCII characters only')
  .optional();

const notFound = (batchId: string): FleetError =>
  new FleetError('not_found', `No batch found with id '${batchId}'`, { param: 'batch_id' });

export const batchRoutes =
  (batches: BatchService): FastifyPluginAsyncZod =>
  async (app) => {
    app.post('/v1/batches', { schema: { body: batchCreateBodySchema } }, async (request) => {
      const key = idempotencyKeySchema.safeParse(request.headers['idempotency-key']);
      if (!key.success) {
        throw new FleetError('bad_request', `Idempotency-Key: ${key.error.issues[0]!.message}`, {
          param: 'Idempotency-Key',
        });
      }
      const principal = principalOf(request);
      const tenant = jobTenant(principal, request.body.tenant);
      // Its input and output must lie where this caller may read and write (400/403 before anything is queued).
      return toApiBatch(await batches.create({ ...request.body, tenant }, 'api', key.data, principal));
    });

    app.get('/v1/batches', { schema: { querystring: batchListQuerySchema } }, async (request): Promise<BatchList> => {
      const { limit, after } = request.query;
      const { batches: page, hasMore } = await batches.list(limit, after, listTenant(principalOf(request)));
      const data = page.map(toApiBatch);
      return {
        object: 'list',
        data,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
        has_more: hasMore,
      };
    });

    app.get('/v1/batches/:batch_id', { schema: { params: batchIdParamsSchema } }, async (request) => {
      const state = await batches.get(request.params.batch_id);
      // Another tenant's batch answers as a missing one: its existence is not the caller's to know.
      if (!state || !canSee(principalOf(request), state.spec.tenant)) throw notFound(request.params.batch_id);
      return toApiBatch(state);
    });

    // A batch finishing or finished cannot be cancelled: the service throws FleetError('conflict'), a 409.
    app.post('/v1/batches/:batch_id/cancel', { schema: { params: batchIdParamsSchema } }, async (request) => {
      const visible = await batches.get(request.params.batch_id);
      if (!visible || !canSee(principalOf(request), visible.spec.tenant)) throw notFound(request.params.batch_id);
      const state = await batches.cancel(request.params.batch_id);
      if (!state) throw notFound(request.params.batch_id);
      return toApiBatch(state);
    });
  };
