import { describe, expect, it } from 'vitest';
import {
  checkpointUriFor,
  modelUriFor,
  rankJobFor,
  reduceJobFor,
  trainingJobBodySchema,
  type TrainingSpec,
} from '../../../common/contracts/training.ts';

const valid = {
  pool: 'p',
  command: '/usr/bin/python3',
  args: ['train.py', '--epochs', '1'],
  data_uri: 'gs://bucket/data/',
  checkpoint_uri: 'oci://ckpt@ns/run-1/',
  workers: 2,
};

/** The first issue of a body as `path: message`. */
function firstIssue(body: unknown): string | undefined {
  const r = trainingJobBodySchema.safeParse(body);
  if (r.success) return undefined;
  const i = r.error.issues[0]!;
  return `${i.path.join('.') || '(body)'}: ${i.message}`;
}

describe('training job body', () => {
  it('fills defaults (no tenant: the route fills the API key’s)', () => {
    expect(trainingJobBodySchema.parse({ ...valid, args: undefined })).toEqual({
      ...valid,
      args: [],
      params: {},
      shard: 'lines',
      mode: 'gang',
      rounds: 1,
      priority: 0,
      max_attempts: 1,
    });
  });

  it('takes a reduce program in rounds mode, its args defaulting to none', () => {
    expect(trainingJobBodySchema.parse({ ...valid, mode: 'rounds', reduce: { command: 'r' } }).reduce).toEqual({
      command: 'r',
      args: [],
    });
  });

  it.each([
    ['no workers', { ...valid, workers: undefined }, 'workers: workers must be a number'],
    ['zero workers', { ...valid, workers: 0 }, 'workers: workers is at least 1'],
    ['fractional workers', { ...valid, workers: 1.5 }, 'workers: workers must be an integer'],
    ['huge gang', { ...valid, workers: 1000 }, 'workers: workers is at most 256'],
    ['zero rounds', { ...valid, rounds: 0 }, 'rounds: rounds is at least 1'],
    ['no command', { ...valid, command: undefined }, 'command: command is required: the program each rank runs'],
    ['empty command', { ...valid, command: '' }, 'command: command must not be empty'],
    ['args as a string', { ...valid, args: 'train.py --epochs 1' }, 'args: args must be an array of strings'],
    [
      'reduce in gang mode',
      { ...valid, reduce: { command: 'r' } },
      'reduce: reduce is for rounds mode: in gang mode each rank resumes from its own checkpoint',
    ],
    [
      'reduce not an object',
      { ...valid, mode: 'rounds', reduce: 'avg' },
      'reduce: reduce must be an object: { command, args }',
    ],
    [
      'reduce without command',
      { ...valid, mode: 'rounds', reduce: {} },
      'reduce.command: command is required: the program the reduce runs',
    ],
    [
      'reduce args not strings',
      { ...valid, mode: 'rounds', reduce: { command: 'r', args: [1] } },
      'reduce.args.0: args are strings',
    ],
    [
      'reduce with an unknown field',
      { ...valid, mode: 'rounds', reduce: { command: 'r', shell: true } },
      'reduce: unsupported field(s): shell',
    ],
    ['an arg not a string', { ...valid, args: ['a', 1] }, 'args.1: args are strings'],
    [
      'no data_uri',
      { ...valid, data_uri: undefined },
      'data_uri: data_uri is required: a storage URI (file://, gs:// or oci://)',
    ],
    ['a data_uri of another scheme', { ...valid, data_uri: 's3://b/k' }, 'data_uri: invalid storage URI'],
    [
      'a bad URI in a data_uri list',
      { ...valid, data_uri: ['gs://bucket/a', 's3://b/k'] },
      'data_uri.1: invalid storage URI',
    ],
    ['an empty data_uri list', { ...valid, data_uri: [] }, 'data_uri: data_uri lists at least one URI'],
    [
      'a data_uri that is a number',
      { ...valid, data_uri: 3 },
      'data_uri: data_uri must be a storage URI or an array of them',
    ],
    ['an unknown shard', { ...valid, shard: 'rows' }, 'shard: shard is lines, objects or none'],
    ['an unknown mode', { ...valid, mode: 'async' }, 'mode: mode is gang or rounds'],
    ['a bad init_uri', { ...valid, init_uri: 'http://x/y' }, 'init_uri: invalid storage URI'],
    ['a relative file URI', { ...valid, checkpoint_uri: 'file://rel/x' }, 'checkpoint_uri: invalid storage URI'],
    ['params not an object', { ...valid, params: [1] }, 'params: params must be a JSON object'],
    ['priority out of range', { ...valid, priority: 10 }, 'priority: priority is 0 to 9'],
    ['unknown field', { ...valid, image: 'x' }, '(body): unsupported field(s): image'],
    ['no pool', { ...valid, pool: undefined }, 'pool: pool is required: the name of a configured pool'],
  ])('%s', (_name, body, expected) => {
    expect(firstIssue(body)).toContain(expected);
  });
});

describe('rank jobs', () => {
  const spec: TrainingSpec = {
    id: 'train_00000000000000000001',
    pool: 'p',
    tenant: 't',
    command: 'train',
    args: ['--x'],
    dataUri: 'gs://b/data/',
    shard: 'none',
    mode: 'gang',
    initUri: null,
    checkpointPrefix: 'gs://b/ckpt/',
    params: { lr: 1 },
    workers: 4,
    rounds: 3,
    priority: 0,
    attempts: 1,
    createdAt: 0,
  };

  it('each rank checkpoints under its own round and rank, and resumes from its round before', () => {
    expect(rankJobFor(spec, 1, 3)).toMatchObject({
      rank: 3,
      worldSize: 4,
      round: 1,
      checkpointUri: 'gs://b/ckpt/round-1/rank-3/',
      previousCheckpointUri: null,
    });
    expect(rankJobFor(spec, 2, 0).previousCheckpointUri).toBe(checkpointUriFor(spec.checkpointPrefix, 1, 0));
    expect(rankJobFor(spec, 2, 0).initUri).toBe(checkpointUriFor(spec.checkpointPrefix, 1, 0));
  });

  it('rounds mode: round 1 starts from init_uri, later rounds from the model the reduce wrote', () => {
    const rounds: TrainingSpec = { ...spec, mode: 'rounds', initUri: 'gs://b/pretrained/', shard: 'lines' };
    expect(rankJobFor(rounds, 1, 2)).toMatchObject({
      initUri: 'gs://b/pretrained/',
      mode: 'rounds',
      data: { uris: ['gs://b/data/'], shard: 'lines' },
    });
    expect(rankJobFor(rounds, 3, 2).initUri).toBe(modelUriFor(rounds.checkpointPrefix, 2));
    expect(reduceJobFor(rounds, 2)).toEqual({
      jobId: rounds.id,
      pool: 'p',
      round: 2,
      inputs: [0, 1, 2, 3].map((k) => `gs://b/ckpt/round-2/rank-${k}/`),
      outputUri: 'gs://b/ckpt/round-2/model/',
      program: null,
      initUri: modelUriFor(rounds.checkpointPrefix, 1),
      params: { lr: 1 },
    });
    // With a reduce program of the user's: the job carries it, and round 1's reduce starts from init_uri.
    const withProgram: TrainingSpec = { ...rounds, reduce: { command: '/usr/bin/python3', args: ['reduce.py'] } };
    expect(reduceJobFor(withProgram, 1)).toMatchObject({
      program: { command: '/usr/bin/python3', args: ['reduce.py'] },
      initUri: 'gs://b/pretrained/',
    });
  });
});
