/**
 * The producer's auth hook: runs first on every request, resolves the key it
 * presents to a principal (request.principal) and checks the route's scope
 * (route-access.ts). With auth off every request is the anonymous principal.
 * Failures answer in OpenAI's error shape: 401 when the key is missing or
 * unknown (the openai client raises AuthenticationError), 403 when the key
 * lacks the scope. Bull Board's 401 carries a Basic challenge so that a
 * browser asks for the key.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { anonymousPrincipal, hasScope, type Principal } from '../../common/auth/principal.ts';
import { FleetError } from '../../common/errors.ts';
import { sendError } from '../http-errors.ts';
import { presentedKey } from './credentials.ts';
import type { KeyTable } from './key-table.ts';
import { routeAccess } from './route-access.ts';

/** Public routes (probes, /metrics) with auth on: a principal that may do nothing. */
const nobody: Principal = { keyId: 'public', tenant: '', scopes: new Set(), storage: { prefixes: [] } };

export const BOARD_REALM = 'interfleet';

export function authenticate(table: KeyTable | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (table === undefined) {
      request.principal = anonymousPrincipal;
      return undefined;
    }
    const access = routeAccess(request.method, request.routeOptions.url);
    if (access.kind === 'public') {
      request.principal = nobody;
      return undefined;
    }
    const deny = (message: string) => {
      reply.header(
        'www-authenticate',
        access.board ? `Basic realm="${BOARD_REALM}", charset="UTF-8"` : `Bearer realm="${BOARD_REALM}"`,
      );
      return sendError(reply, new FleetError('unauthorized', message));
    };
    const key = presentedKey(request.headers.authorization);
    if (key === undefined) {
      return deny(
        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (the openai client's apiKey)" +
          (access.board ? ', or log in with the key as the password' : ''),
      );
    }
    const principal = table.find(key);
    if (principal === undefined) {
      return deny('Incorrect API key provided.');
    }
    request.principal = principal;
    // Every line of this request (fastify's own "request completed" included) names the key, never the key itself.
    request.log = request.log.child({ keyId: principal.keyId, tenant: principal.tenant });
    reply.log = request.log;
    if (access.anyOf.length > 0 && !access.anyOf.some((s) => hasScope(principal, s))) {
      const needs = access.anyOf.map((s) => `'${s}'`).join(' or ');
      return sendError(
        reply,
        new FleetError(
          'forbidden',
          `API key '${principal.keyId}' lacks the scope ${request.method} ${request.routeOptions.url} needs: ${needs}`,
        ),
      );
    }
    return undefined;
  };
}
