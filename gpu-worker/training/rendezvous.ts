/**
 * A gang's rendezvous (gang mode), as torchrun's static rendezvous has it:
 * rank 0 picks a free port on its worker's host and publishes its address in
 * the gang's state in Redis (TrainingStore.publishMaster, only for the run of
 * the gang it belongs to); every other rank waits for that address and hands
 * it to its program as MASTER_ADDR / MASTER_PORT, where the programs meet
 * (torch.distributed's env:// init, or a socket of their own).
 *
 * The address is what the other ranks can reach: on OKE the pod's IP (POD_IP,
 * from the downward API), on one machine the host's own address; the pool's
 * `lanes.training.advertiseHost` overrides both.
 */
import { createServer } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Master, TrainingStore } from '../../common/training/training-state.ts';

/** The address rank 0 publishes: configured, else POD_IP, else the host's first external IPv4, else loopback. */
export function advertisedHost(
  configured: string | undefined,
  env: NodeJS.ProcessEnv,
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): string {
  if (configured) return configured;
  if (env.POD_IP) return env.POD_IP;
  for (const infos of Object.values(interfaces)) {
    const external = infos?.find((i) => i.family === 'IPv4' && !i.internal);
    if (external) return external.address;
  }
  return '127.0.0.1';
}

/** A port free on every interface now (the program binds it a moment later; a clash fails the rank, and the gang restarts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Thrown when rank 0 has not published its address in time. */
export class RendezvousTimeout extends Error {}

/**
 * Waits for rank 0's address of run `restart` of `round`. Polls (every `pollMs`): one HGET per
 * rank per poll, for the seconds a gang takes to start. Rejects on abort or after `timeoutMs`.
 */
export async function awaitMaster(
  store: Pick<TrainingStore, 'master'>,
  where: { pool: string; jobId: string; round: number; restart: number },
  opts: { signal: AbortSignal; timeoutMs: number; pollMs?: number },
): Promise<Master> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    opts.signal.throwIfAborted();
    const master = await store.master(where.pool, where.jobId);
    if (master && master.round === where.round && master.restart === where.restart) return master;
    if (Date.now() >= deadline) {
      throw new RendezvousTimeout(`rank 0 did not publish its address within ${Math.round(opts.timeoutMs / 1000)} s`);
    }
    await sleep(opts.pollMs ?? 100, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
