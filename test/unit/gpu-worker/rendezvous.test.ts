import { describe, expect, it } from 'vitest';
import type { Master } from '../../../common/training/training-state.ts';
import { advertisedHost, awaitMaster, RendezvousTimeout } from '../../../gpu-worker/training/rendezvous.ts';

const nic = (address: string, internal: boolean, family: 'IPv4' | 'IPv6' = 'IPv4') => ({
  address,
  internal,
  family,
  netmask: '',
  mac: '',
  cidr: null,
  ...(family === 'IPv6' ? { scopeid: 0 } : {}),
});

describe('advertisedHost', () => {
  const interfaces = { lo: [nic('127.0.0.1', true)], eth0: [nic('fe80::1', false, 'IPv6'), nic('10.1.2.3', false)] };
  it.each([
    ['the configured address first', '192.168.0.9', { POD_IP: '10.244.0.5' }, interfaces, '192.168.0.9'],
    ["then the pod's IP", undefined, { POD_IP: '10.244.0.5' }, interfaces, '10.244.0.5'],
    ["then the host's first external IPv4", undefined, {}, interfaces, '10.1.2.3'],
    ['else loopback', undefined, {}, { lo: [nic('127.0.0.1', true)] }, '127.0.0.1'],
  ] as const)('%s', (_, configured, env, nics, expected) => {
    expect(advertisedHost(configured, env, nics as never)).toBe(expected);
  });
});

describe('awaitMaster', () => {
  const where = { pool: 'p', jobId: 'j', round: 2, restart: 1 };
  it('takes only the address of its own run of its round', async () => {
    const published: Master[] = [
      { round: 2, restart: 0, addr: 'old', port: 1 },
      { round: 2, restart: 1, addr: 'new', port: 2 },
    ];
    let polls = 0;
    const store = { master: () => Promise.resolve(published[Math.min(polls++, 1)]) };
    const signal = new AbortController().signal;
    expect(await awaitMaster(store, where, { signal, timeoutMs: 5000, pollMs: 1 })).toMatchObject({ addr: 'new' });
    expect(polls).toBe(2);
  });
  it('gives up after its timeout, and on abort', async () => {
    const store = { master: () => Promise.resolve(undefined) };
    const signal = new AbortController().signal;
    await expect(awaitMaster(store, where, { signal, timeoutMs: 30, pollMs: 5 })).rejects.toThrow(RendezvousTimeout);
    const abort = new AbortController();
    const waiting = awaitMaster(store, where, { signal: abort.signal, timeoutMs: 5000, pollMs: 5 });
    abort.abort('gang_ended');
    await expect(waiting).rejects.toBe('gang_ended');
  });
});
