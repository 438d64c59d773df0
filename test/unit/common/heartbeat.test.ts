import { describe, expect, it } from 'vitest';
import { expiredWorkerIds, liveWorkers, type Heartbeat } from '../../../common/contracts/heartbeat.ts';

const beat = (workerId: string, expiresAt: number): Heartbeat => ({
  workerId,
  pool: 'p',
  host: 'h',
  pid: 1,
  backend: 'echo',
  lanes: [{ name: 'realtime', concurrency: 4, inFlight: 0 }],
  state: 'ready',
  startedAt: 0,
  seenAt: expiresAt - 10,
  expiresAt,
});

describe('worker heartbeats', () => {
  const raw = {
    live: JSON.stringify(beat('live', 2000)),
    dead: JSON.stringify(beat('dead', 999)),
    garbage: '{not json',
    wrongShape: JSON.stringify({ workerId: 'x' }),
  };

  it('keeps only unexpired, well-formed entries', () => {
    expect(liveWorkers(raw, 1000).map((h) => h.workerId)).toEqual(['live']);
  });

  it('names every other entry for removal', () => {
    expect(expiredWorkerIds(raw, 1000).sort()).toEqual(['dead', 'garbage', 'wrongShape']);
  });

  it('treats an entry as dead at its expiry instant', () => {
    expect(liveWorkers(raw, 2000)).toEqual([]);
  });
});
