/**
 * The principal of a request, set by the auth hook (producer/auth/) before
 * any route runs. Routes and services read it through `principalOf`; with
 * auth off every request is the anonymous principal.
 */
import type { FastifyRequest } from 'fastify';
import { anonymousPrincipal, type Principal } from '../../common/auth/principal.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export function principalOf(request: FastifyRequest): Principal {
  return request.principal ?? anonymousPrincipal;
}
