import { describe, expect, it } from 'vitest';
import { FleetError } from '../../../common/errors.ts';
import { errorBody, toHttpError } from '../../../producer/http-errors.ts';

describe('HTTP error mapping', () => {
  it.each([
    ['bad_request', 400, 'invalid_request_error'],
    ['model_not_found', 404, 'not_found_error'],
    ['overloaded', 429, 'rate_limit_error'],
    ['unavailable', 503, 'server_error'],
    ['deadline_exceeded', 504, 'server_error'],
  ] as const)('%s → %i %s', (code, status, type) => {
    const err = new FleetError(code, 'm');
    expect(err.status).toBe(status);
    expect(errorBody(err).error).toMatchObject({ type, code, message: 'm', param: null });
  });

  it('maps fastify body-size and media-type errors', () => {
    expect(toHttpError({ code: 'FST_ERR_CTP_BODY_TOO_LARGE', message: 'too large', statusCode: 413 }).code).toBe(
      'payload_too_large',
    );
    expect(toHttpError({ code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 415 }).code).toBe('bad_request');
  });

  it('hides internal error details', () => {
    const err = toHttpError(new Error('secret stack detail'));
    expect(err.code).toBe('internal');
    expect(err.message).not.toContain('secret');
  });
});
