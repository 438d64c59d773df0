import { describe, expect, it, vi } from 'vitest';
import type { TaskInput, TaskOutput } from '../../../common/contracts/tasks.ts';
import { FleetError } from '../../../common/errors.ts';
import type { ModelBackend } from '../../../gpu-worker/backends/backend.ts';
import { createEchoBackend } from '../../../gpu-worker/backends/echo.ts';
import { groupBatches, runBatch } from '../../../gpu-worker/bulk/micro-batch.ts';

const sentiment = (text: string): TaskInput => ({ task: 'sentiment', text });
const signal = () => new AbortController().signal;

/** A backend with run() only, that tracks how many calls are in flight. */
function slowBackend(failOn?: string) {
  let inFlight = 0;
  let peak = 0;
  const backend: ModelBackend = {
    kind: 'slow',
    tasks: new Set(['sentiment']),
    async run(input: TaskInput): Promise<TaskOutput> {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 2));
      inFlight--;
      if (input.task === 'sentiment' && input.text === failOn) throw new FleetError('backend_failed', 'boom');
      return { task: 'sentiment', label: 'neutral', score: 0 };
    },
    close: () => Promise.resolve(),
  };
  return { backend, peak: () => peak };
}

describe('runBatch', () => {
  it('uses runMany when the backend has one, in one call, results in order', async () => {
    const echo = createEchoBackend();
    const runMany = vi.spyOn(echo, 'runMany');
    const run = vi.spyOn(echo, 'run');
    const inputs: TaskInput[] = [
      sentiment('a'),
      { task: 'summarize', text: 'One. Two. Three.', maxSentences: 2 },
      { task: 'chat', messages: [{ role: 'user', content: 'hi there' }] },
    ];
    const out = await runBatch(echo, inputs, { signal: signal() });
    expect(runMany).toHaveBeenCalledTimes(1);
    expect(run).not.toHaveBeenCalled();
    expect(out.map((o) => (o instanceof Error ? 'error' : o.task))).toEqual(['sentiment', 'summarize', 'chat']);
  });

  it('falls back to run() with bounded concurrency, a failure staying in its slot', async () => {
    const { backend, peak } = slowBackend('bad');
    const inputs = Array.from({ length: 20 }, (_, i) => sentiment(i === 7 ? 'bad' : `t${i}`));
    const out = await runBatch(backend, inputs, { signal: signal(), concurrency: 3 });
    expect(out).toHaveLength(20);
    expect(peak()).toBe(3);
    expect(out[7]).toBeInstanceOf(FleetError);
    expect(out.filter((o) => o instanceof Error)).toHaveLength(1);
  });

  it('rejects with the signal reason when aborted', async () => {
    const { backend } = slowBackend();
    const ac = new AbortController();
    const reason = new Error('preempted');
    const running = runBatch(backend, [sentiment('a'), sentiment('b')], { signal: ac.signal, concurrency: 1 });
    ac.abort(reason);
    await expect(running).rejects.toBe(reason);
    await expect(runBatch(createEchoBackend(), [sentiment('a')], { signal: ac.signal })).rejects.toBe(reason);
  });
});

describe('groupBatches', () => {
  async function* count(n: number) {
    for (let i = 0; i < n; i++) yield i;
  }
  it('groups into arrays of size, the last one smaller', async () => {
    const groups: number[][] = [];
    for await (const g of groupBatches(count(7), 3)) groups.push(g);
    expect(groups).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
  });
  it('rejects a size below 1', async () => {
    await expect(groupBatches(count(1), 0).next()).rejects.toThrow(RangeError);
  });
});
