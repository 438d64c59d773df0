/**
 * A role's probe server: /metrics (Prometheus), /healthz (the process runs)
 * and /readyz (it can do its job). Workers and scheduler replicas each run
 * one; the producer serves the same paths on its API port.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface ProbeServerOptions {
  host: string;
  /** 0 picks a free port; -1 runs no server. */
  port: number;
  registry: Registry;
  /** A word for /healthz and /readyz (ready, draining, standby...). */
  state: () => string;
  ready: () => boolean;
}

export interface ProbeServer {
  app: FastifyInstance | undefined;
  /** The /metrics URL, when a server runs. */
  url: string | undefined;
}

export async function startProbeServer(opts: ProbeServerOptions): Promise<ProbeServer> {
  if (opts.port < 0) return { app: undefined, url: undefined };
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_req, reply) => reply.type(opts.registry.contentType).send(await opts.registry.metrics()));
  app.get('/healthz', async () => ({ status: 'ok', state: opts.state() }));
  app.get('/readyz', async (_req, reply) => {
    const ready = opts.ready();
    return reply.code(ready ? 200 : 503).send({ ready, state: opts.state() });
  });
  const address = await app.listen({ host: opts.host, port: opts.port });
  return { app, url: `${address}/metrics` };
}
