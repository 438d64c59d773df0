/**
 * Child process hosting delay proxies, so their timers do not share an event
 * loop with the load generator. Env: BENCH_UPSTREAM (redis://host:port),
 * BENCH_DELAY_MS, BENCH_PROXIES (comma-separated names). Sends
 * `{type:'ready', ports}`; answers `reset` and `stats` messages.
 */
import { DelayProxy } from './delay-proxy.ts';

const upstream = new URL(process.env.BENCH_UPSTREAM ?? 'redis://127.0.0.1:6379');
const delayMs = Number(process.env.BENCH_DELAY_MS ?? '1');
const names = (process.env.BENCH_PROXIES ?? 'default').split(',').filter((n) => n !== '');

const proxies = new Map<string, DelayProxy>();
const ports: Record<string, number> = {};
for (const name of names) {
  const proxy = new DelayProxy({ host: upstream.hostname, port: Number(upstream.port || 6379) }, delayMs);
  ports[name] = await proxy.listen();
  proxies.set(name, proxy);
}

interface Msg {
  type: string;
  id: number;
  name?: string;
}

process.on('message', (raw) => {
  const msg = raw as Msg;
  const selected = msg.name !== undefined ? [[msg.name, proxies.get(msg.name)] as const] : [...proxies];
  if (msg.type === 'reset') {
    for (const [, p] of selected) p?.reset();
    process.send?.({ type: 'reset', id: msg.id });
  } else if (msg.type === 'stats') {
    process.send?.({ type: 'stats', id: msg.id, stats: Object.fromEntries(selected.map(([n, p]) => [n, p?.stats()])) });
  }
});

const shutdown = (): void => {
  void Promise.all([...proxies.values()].map((p) => p.close())).then(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('disconnect', shutdown);
process.send?.({ type: 'ready', ports });
