/**
 * fast-check over every route of the real producer, through real HTTP, on
 * real Redis (test/helpers/api-fuzz.ts makes the cases and judges them):
 * invalid bodies get a 4xx that names the field, nothing answers 5xx, nothing
 * is enqueued or stored, and Object.prototype is untouched. The examples
 * below the property are what the fuzzer found, kept as regressions.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fc, test } from '@fast-check/vitest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueDisplayName, queueName } from '../../common/topology.ts';
import { fuzzCase, judge, prototypeFingerprint, send, type FuzzTargets } from '../helpers/api-fuzz.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';
import { diffSnapshots, queueJobTotals, snapshotPrefix } from '../helpers/redis-snapshot.ts';

const yaml = `
pools:
  - name: p
    backend: echo
`;

let fleet: TestFleet;
let dir: string;
let targets: FuzzTargets;
let before: Map<string, string>;
let prototypeBefore: string;

beforeAll(async () => {
  // No workers: a case that wrongly got through would wait in the queue, where the snapshot sees it.
  fleet = await startFleet({ yaml, workers: 0 });
  dir = await mkdtemp(join(tmpdir(), 'api-fuzz-'));
  await writeFile(join(dir, 'in.jsonl'), '{"custom_id":"a","method":"POST","url":"/v1/infer","body":{}}\n');
  targets = {
    pool: 'p',
    boardQueues: [queueDisplayName('rt', 'p'), queueName('rt', 'p')],
    dataUri: pathToFileURL(join(dir, 'in.jsonl')).href,
    checkpointUri: `${pathToFileURL(join(dir, 'ck')).href}/`,
    bodyLimitBytes: fleet.config.producer.bodyLimitBytes,
  };
  before = await snapshotPrefix(fleet.redis, fleet.prefix);
  prototypeBefore = prototypeFingerprint();
});
afterAll(async () => {
  await fleet?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A training job body that is valid but for what a case changes. */
const trainingBody = () => ({
  pool: 'p',
  command: 'builtin:text-classifier',
  data_uri: targets.dataUri,
  checkpoint_uri: targets.checkpointUri,
  workers: 1,
});

describe('fuzzed requests', () => {
  test.prop([fc.constant(null).chain(() => fuzzCase(targets))], {
    numRuns: Number(process.env.FUZZ_RUNS ?? 300),
    // FUZZ_SEED replays the seed a failure printed.
    ...(process.env.FUZZ_SEED !== undefined && { seed: Number(process.env.FUZZ_SEED) }),
  })(
    'never 5xx; invalid bodies 4xx naming the field',
    async (c) => {
      const answer = await send(fleet.producer.url, c);
      expect(judge(c, answer), c.label).toBeUndefined();
    },
    120_000,
  );

  // What the fuzzer found, kept as regressions: each was a 500 or a 400 that named no field.
  it.each([
    {
      label: 'training params nested 5000 deep (JSON.stringify threw RangeError: 500)',
      method: 'POST' as const,
      path: '/v1/training/jobs',
      body: () =>
        JSON.stringify({ ...trainingBody(), params: '@' }).replace(
          '"@"',
          `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`,
        ),
      param: 'params',
      mentions: 'params',
    },
    {
      label: 'Bull Board activeQueue that decodes twice badly (URIError: 500)',
      method: 'GET' as const,
      path: '/admin/queues/api/queues?activeQueue=%25C0%2580&status=completed&page=1&jobsPerPage=1',
      param: 'activeQueue',
      mentions: 'activeQueue',
    },
    {
      label: 'a __proto__ key inside a field (400 "Body is not valid JSON", naming nothing)',
      method: 'POST' as const,
      path: '/v1/chat/completions',
      body: () => '{"model":"p","messages":[{"role":"user","content":"x"}],"max_tokens":{"":{"__proto__":null}}}',
      param: 'max_tokens..__proto__',
      mentions: '__proto__',
    },
    {
      label: 'scheduler explain with pool twice (400 naming nothing)',
      method: 'GET' as const,
      path: '/v1/scheduler/explain?pool=a&pool=b',
      param: 'pool',
      mentions: 'pool',
    },
  ])('$label', async ({ method, path, body, param, mentions }) => {
    const res = await fetch(`${fleet.producer.url}${path}`, {
      method,
      ...(body && { headers: { 'content-type': 'application/json' }, body: body() }),
    });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { param: string; message: string } };
    expect(error.param).toBe(param);
    expect(error.message).toContain(mentions);
  });

  it('left nothing enqueued or stored, and Object.prototype untouched', async () => {
    expect(diffSnapshots(before, await snapshotPrefix(fleet.redis, fleet.prefix))).toEqual([]);
    for (const [queue, jobs] of await queueJobTotals(fleet.redis, fleet.prefix)) expect(jobs, queue).toBe(0);
    expect(prototypeFingerprint()).toBe(prototypeBefore);
  });
});
