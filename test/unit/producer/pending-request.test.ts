import { describe, expect, it } from 'vitest';
import type { DoneReply } from '../../../common/contracts/realtime.ts';
import { FleetError } from '../../../common/errors.ts';
import { PendingRequest, type EndReason } from '../../../producer/pending-request.ts';

const done: DoneReply = {
  i: 'r',
  k: 'done',
  output: { task: 'sentiment', label: 'positive', score: 0.5 },
  timings: { queueMs: 1, firstTokenMs: 1, runMs: 1 },
  worker: 'w',
};

function request() {
  const ends: EndReason[] = [];
  return { req: new PendingRequest('r', 'p', 0, (r) => ends.push(r)), ends };
}

describe('PendingRequest', () => {
  it('yields deltas in order, then done, and ends once', async () => {
    const { req, ends } = request();
    req.push({ i: 'r', k: 'delta', text: 'a' });
    const got: string[] = [];
    const reading = (async () => {
      for await (const r of req.replies()) got.push(r.k === 'delta' ? r.text : 'DONE');
    })();
    req.push({ i: 'r', k: 'delta', text: 'b' });
    req.push(done);
    req.push({ i: 'r', k: 'delta', text: 'late' });
    await reading;
    expect(got).toEqual(['a', 'b', 'DONE']);
    expect(ends).toEqual(['done']);
  });

  it('rejects with the worker error code', async () => {
    const { req, ends } = request();
    req.push({ i: 'r', k: 'error', code: 'backend_failed', message: 'boom' });
    await expect(req.result()).rejects.toMatchObject({ code: 'backend_failed', message: 'boom' });
    expect(ends).toEqual(['error']);
  });

  it('ends on deadline and ignores the late answer', async () => {
    const { req, ends } = request();
    const result = req.result();
    req.fail('deadline', new FleetError('deadline_exceeded', 'late'));
    req.push(done);
    await expect(result).rejects.toMatchObject({ code: 'deadline_exceeded' });
    expect(ends).toEqual(['deadline']);
  });
});
