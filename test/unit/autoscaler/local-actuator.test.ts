/**
 * The `local` actuator (scheduler/autoscaler/actuators/local.ts): which replicas go first on
 * scale-in, and how a decision becomes start()/stop() calls on the launcher's fleet, over a small
 * in-memory LocalFleet in place of launcher/local-fleet.ts.
 */
import { describe, expect, it } from 'vitest';
import type { ReplicaCount } from '../../../scheduler/autoscaler/actuators/actuator.ts';
import { createLocalActuator, scaleInOrder, type LocalFleet } from '../../../scheduler/autoscaler/actuators/local.ts';

type Member = { handle: number; workerId: string | undefined };

const busyOf = (entries: Record<string, number>): ReadonlyMap<string, number> => new Map(Object.entries(entries));

describe('scaleInOrder', () => {
  it('puts members not yet ready first, even before idle ready ones', () => {
    const members: Member[] = [
      { handle: 1, workerId: 'w1' },
      { handle: 2, workerId: undefined },
      { handle: 3, workerId: 'w3' },
    ];
    expect(scaleInOrder(members, busyOf({ w1: 0, w3: 0 }))).toEqual([2, 3, 1]);
  });

  it('then the fewest busy slots, whatever the handle order', () => {
    const members: Member[] = [
      { handle: 1, workerId: 'w1' },
      { handle: 2, workerId: 'w2' },
      { handle: 3, workerId: 'w3' },
      { handle: 4, workerId: 'w4' },
    ];
    expect(scaleInOrder(members, busyOf({ w1: 2, w2: 7, w3: 0, w4: 1000 }))).toEqual([3, 1, 2, 4]);
  });

  it('counts a worker id missing from `busy` as 0 busy slots (after not-ready, tied with idle ones)', () => {
    const members: Member[] = [
      { handle: 1, workerId: 'idle' },
      { handle: 2, workerId: 'busy' },
      { handle: 3, workerId: 'unknown' },
      { handle: 4, workerId: undefined },
    ];
    // unknown (0) ties with idle (0): newest first; both before busy (1); not ready before all.
    expect(scaleInOrder(members, busyOf({ idle: 0, busy: 1 }))).toEqual([4, 3, 1, 2]);
  });

  it('breaks ties newest handle first, among not-ready members too', () => {
    const members: Member[] = [
      { handle: 5, workerId: 'a' },
      { handle: 9, workerId: 'b' },
      { handle: 7, workerId: 'c' },
      { handle: 2, workerId: undefined },
      { handle: 8, workerId: undefined },
    ];
    expect(scaleInOrder(members, busyOf({ a: 3, b: 3, c: 3 }))).toEqual([8, 2, 9, 7, 5]);
  });

  it('leaves its input alone and handles an empty fleet', () => {
    const members: Member[] = [
      { handle: 1, workerId: 'a' },
      { handle: 2, workerId: 'b' },
    ];
    const copy = structuredClone(members);
    expect(scaleInOrder(members, busyOf({ a: 0, b: 5 }))).toEqual([1, 2]);
    expect(members).toEqual(copy);
    expect(scaleInOrder([], new Map())).toEqual([]);
  });
});

/** The launcher's processes as plain records: start() adds a starting member, stop() removes it. */
class MemoryFleet implements LocalFleet {
  private next = 1;
  readonly procs: Array<{ handle: number; pool: string; workerId: string | undefined; stopping: boolean }> = [];
  readonly started: string[] = [];
  readonly stopped: number[] = [];

  /** A process already running, ready under `workerId` (undefined: still starting). */
  add(pool: string, workerId: string | undefined): number {
    const handle = this.next++;
    this.procs.push({ handle, pool, workerId, stopping: false });
    return handle;
  }

  private live(pool: string) {
    return this.procs.filter((p) => p.pool === pool && !p.stopping);
  }

  count(pool: string): ReplicaCount {
    const live = this.live(pool);
    return { desired: live.length, ready: live.filter((p) => p.workerId !== undefined).length };
  }

  members(pool: string): ReadonlyArray<Member> {
    return this.live(pool).map((p) => ({ handle: p.handle, workerId: p.workerId }));
  }

  start(pool: string): void {
    this.started.push(pool);
    this.add(pool, undefined);
  }

  stop(handle: number): void {
    const p = this.procs.find((m) => m.handle === handle);
    if (!p || p.stopping) throw new Error(`stop(${handle}) of a process not running`);
    p.stopping = true;
    this.stopped.push(handle);
  }
}

describe('createLocalActuator', () => {
  it('observes what the fleet counts', async () => {
    const fleet = new MemoryFleet();
    fleet.add('p', 'w1');
    fleet.add('p', undefined);
    fleet.add('other', 'o1');
    const actuator = createLocalActuator(fleet);
    expect(actuator.kind).toBe('local');
    expect(await actuator.observe('p', Promise.resolve([]))).toEqual({ desired: 2, ready: 1 });
    expect(await actuator.observe('none', Promise.resolve([]))).toEqual({ desired: 0, ready: 0 });
    await actuator.close();
  });

  it('scales up by starting exactly the difference, stopping nothing', async () => {
    const fleet = new MemoryFleet();
    fleet.add('p', 'w1');
    const actuator = createLocalActuator(fleet);
    await actuator.scale('p', 4, busyOf({ w1: 2 }));
    expect(fleet.started).toEqual(['p', 'p', 'p']);
    expect(fleet.stopped).toEqual([]);
    expect(await actuator.observe('p', Promise.resolve([]))).toEqual({ desired: 4, ready: 1 });

    // From zero too (a pool woken by its first job).
    await actuator.scale('q', 1, new Map());
    expect(fleet.started).toEqual(['p', 'p', 'p', 'q']);
  });

  it('scales in by stopping the not-ready, then the idlest, then the newest, and no more', async () => {
    const fleet = new MemoryFleet();
    const busy = fleet.add('p', 'busy'); // 1
    const idleOld = fleet.add('p', 'idle-old'); // 2
    const starting = fleet.add('p', undefined); // 3
    const idleNew = fleet.add('p', 'idle-new'); // 4
    const light = fleet.add('p', 'light'); // 5
    const other = fleet.add('other', 'o1'); // 6: another pool, never touched
    const actuator = createLocalActuator(fleet);
    const slots = busyOf({ busy: 1003, 'idle-old': 0, 'idle-new': 0, light: 1, o1: 0 });

    await actuator.scale('p', 3, slots);
    expect(fleet.stopped).toEqual([starting, idleNew]);
    expect(fleet.started).toEqual([]);
    expect(await actuator.observe('p', Promise.resolve([]))).toEqual({ desired: 3, ready: 3 });

    await actuator.scale('p', 1, slots);
    expect(fleet.stopped).toEqual([starting, idleNew, idleOld, light]);
    expect(fleet.members('p')).toEqual([{ handle: busy, workerId: 'busy' }]);

    await actuator.scale('p', 0, slots);
    expect(fleet.stopped).toEqual([starting, idleNew, idleOld, light, busy]);
    expect(fleet.members('other')).toEqual([{ handle: other, workerId: 'o1' }]);
  });

  it('does nothing when the fleet already has that many', async () => {
    const fleet = new MemoryFleet();
    fleet.add('p', 'w1');
    fleet.add('p', undefined);
    const actuator = createLocalActuator(fleet);
    await actuator.scale('p', 2, busyOf({ w1: 0 }));
    await actuator.scale('empty', 0, new Map());
    expect(fleet.started).toEqual([]);
    expect(fleet.stopped).toEqual([]);
  });

  it('counts processes already asked to stop as gone (a second scale-in stops others)', async () => {
    const fleet = new MemoryFleet();
    for (const id of ['a', 'b', 'c']) fleet.add('p', id);
    const actuator = createLocalActuator(fleet);
    await actuator.scale('p', 2, busyOf({ a: 0, b: 1, c: 2 }));
    // The stopped one is still draining (and still heartbeating as idle), yet not a member any more.
    await actuator.scale('p', 1, busyOf({ a: 0, b: 1, c: 2 }));
    expect(fleet.stopped).toEqual([1, 2]);
    // Scaling back up starts new processes rather than reviving one that drains.
    await actuator.scale('p', 2, new Map());
    expect(fleet.started).toEqual(['p']);
  });
});
