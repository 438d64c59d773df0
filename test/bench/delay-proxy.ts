/**
 * A TCP delay proxy standing in for the GKE↔OKE interconnect (this kernel has
 * no netem): it accepts connections on 127.0.0.1 and pipes each one to the
 * upstream Redis, holding every chunk for `delayMs` in each direction before
 * forwarding it. Order per connection and direction is preserved: chunks wait
 * in a FIFO and leave when their due time has come.
 *
 * It also counts what flows through it, for "round trips per request":
 * - bursts: `data` events read from a socket (one TCP read; usually one
 *   write by the peer, or several writes that arrived back to back);
 * - commands: Redis commands parsed from the client→server stream (RESP).
 */
import net from 'node:net';
import { RespCommandCounter } from './resp-counter.ts';

export interface ProxyStats {
  connections: number;
  /** Client→server bursts (reads), server→client bursts. */
  c2sBursts: number;
  s2cBursts: number;
  c2sBytes: number;
  s2cBytes: number;
  /** Redis commands sent by clients, and their names. */
  commands: number;
  names: Record<string, number>;
}

export interface Upstream {
  host: string;
  port: number;
}

/** Forwards `from` → `to`, each chunk `delayMs` later than it was read, in order. */
function delayedPipe(from: net.Socket, to: net.Socket, delayMs: number, onChunk: (chunk: Buffer) => void): void {
  const queue: Array<{ due: number; chunk: Buffer }> = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = (): void => {
    timer = undefined;
    const now = performance.now();
    if (!to.destroyed) to.cork();
    while (queue.length > 0 && queue[0]!.due <= now + 0.05) {
      const { chunk } = queue.shift()!;
      if (!to.destroyed) to.write(chunk);
    }
    if (!to.destroyed) to.uncork();
    if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.due - now));
    else if (ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    onChunk(chunk);
    queue.push({ due: performance.now() + delayMs, chunk });
    timer ??= setTimeout(flush, delayMs);
  });
  from.on('end', () => {
    ended = true;
    if (queue.length === 0 && timer === undefined) to.end();
  });
}

export class DelayProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly counter = new RespCommandCounter();
  private s = { connections: 0, c2sBursts: 0, s2cBursts: 0, c2sBytes: 0, s2cBytes: 0 };

  constructor(
    private readonly upstream: Upstream,
    private readonly delayMs: number,
  ) {}

  /** Listens on a free port of 127.0.0.1; resolves with the port. */
  async listen(): Promise<number> {
    const server = net.createServer({ noDelay: true }, (client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    this.s.connections++;
    const upstream = net.connect({ host: this.upstream.host, port: this.upstream.port, noDelay: true });
    client.setNoDelay(true);
    this.sockets.add(client);
    this.sockets.add(upstream);
    // One RESP parser per connection: commands never span connections.
    const parser = new RespCommandCounter();
    delayedPipe(client, upstream, this.delayMs, (chunk) => {
      this.s.c2sBursts++;
      this.s.c2sBytes += chunk.length;
      const before = parser.commands;
      parser.feed(chunk);
      if (parser.commands > before) {
        this.counter.commands += parser.commands - before;
        for (const [name, n] of parser.names) this.counter.names.set(name, (this.counter.names.get(name) ?? 0) + n);
        parser.reset();
      }
    });
    delayedPipe(upstream, client, this.delayMs, (chunk) => {
      this.s.s2cBursts++;
      this.s.s2cBytes += chunk.length;
    });
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  }

  /** Zeroes the traffic counters (`connections` keeps counting accepted connections). */
  reset(): void {
    this.s = { connections: this.s.connections, c2sBursts: 0, s2cBursts: 0, c2sBytes: 0, s2cBytes: 0 };
    this.counter.reset();
  }

  stats(): ProxyStats {
    return { ...this.s, commands: this.counter.commands, names: Object.fromEntries(this.counter.names) };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
