/**
 * Maps every failure onto an HTTP answer at the API boundary: FleetError codes
 * to status codes, zod validation to 400 naming the field, oversized bodies
 * to 413, and Retry-After on 429/503. Bodies use OpenAI's error shape so that
 * OpenAI clients surface them as typed errors.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { FleetError, type ErrorCode } from '../common/errors.ts';

export interface OpenAIErrorBody {
  /** `retry_after_ms` is ours: streams report errors after the headers, where Retry-After cannot go. */
  error: { message: string; type: string; param: string | null; code: string; retry_after_ms?: number };
}

/** OpenAI's `type` for each status family. */
function errorType(status: number): string {
  if (status === 429) return 'rate_limit_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** OpenAI's own code where clients know one: a missing or wrong key is `invalid_api_key`. */
export const wireCode = (code: ErrorCode): string => (code === 'unauthorized' ? 'invalid_api_key' : code);

export function errorBody(err: FleetError): OpenAIErrorBody {
  return {
    error: {
      message: err.message,
      type: errorType(err.status),
      param: err.param ?? null,
      code: wireCode(err.code),
      ...(err.retryAfterMs !== undefined ? { retry_after_ms: err.retryAfterMs } : {}),
    },
  };
}

/** Normalises anything a route or fastify threw into a FleetError. */
export function toHttpError(err: unknown): FleetError {
  if (err instanceof FleetError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const first = err.validation[0];
    const param = first?.instancePath.replace(/^\//, '').replaceAll('/', '.') || undefined;
    const details = err.validation
      .map((v) => `${v.instancePath.replace(/^\//, '').replaceAll('/', '.') || 'body'}: ${v.message}`)
      .join('; ');
    return new FleetError('bad_request', `invalid request: ${details}`, { param });
  }
  const fe = err as Partial<FastifyError>;
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new FleetError('payload_too_large', fe.message ?? 'request body is too large');
  }
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new FleetError('bad_request', 'Content-Type must be application/json');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new FleetError('bad_request', fe.message ?? 'bad request');
  }
  return new FleetError('internal', 'internal error', { cause: err });
}

export function sendError(reply: FastifyReply, err: FleetError): FastifyReply {
  if (err.retryAfterMs !== undefined)
    reply.header('retry-after', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
  return reply.code(err.status).send(errorBody(err));
}

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const httpErr = toHttpError(err);
  if (httpErr.status >= 500) request.log.error({ err }, 'request failed');
  return sendError(reply, httpErr);
}

/** An AbortSignal that fires when the caller disconnects before the reply is finished. */
export function callerGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
