/**
 * A loopback TCP proxy between the roles and Redis, for the outage rows: it
 * passes bytes through, or cuts Redis off in one of two ways —
 * `drop`: every open connection is destroyed and new ones are closed at once
 * (a Redis that went away); `stall`: connections stay open but nothing passes
 * either way, new ones included (a partition that swallows packets).
 * `restore()` passes bytes again (connections held by a stall resume).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'drop' | 'stall';

export interface TcpProxy {
  readonly url: string;
  mode(): ProxyMode;
  cut(mode: 'drop' | 'stall'): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const server: Server = createServer((client) => {
    if (mode === 'drop') {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
    if (mode === 'stall') pause(pair);
  });
  const pause = (p: { client: Socket; upstream: Socket }): void => {
    p.client.unpipe(p.upstream);
    p.upstream.unpipe(p.client);
    p.client.pause();
    p.upstream.pause();
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    mode: () => mode,
    cut(next) {
      mode = next;
      for (const p of pairs) {
        if (next === 'drop') {
          p.client.destroy();
          p.upstream.destroy();
        } else pause(p);
      }
    },
    restore() {
      const was = mode;
      mode = 'pass';
      if (was === 'stall') {
        for (const p of pairs) {
          p.client.pipe(p.upstream);
          p.upstream.pipe(p.client);
          p.client.resume();
          p.upstream.resume();
        }
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.client.destroy();
          p.upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
