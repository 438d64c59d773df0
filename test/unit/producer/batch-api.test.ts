/**
 * The Batch API's pure parts: the Batch object built from Redis state, the
 * default output location, and the create body's validation messages.
 */
import { describe, expect, it } from 'vitest';
import type { BatchState, BatchStatus } from '../../../common/batch/batch-state.ts';
import {
  apiBatchSchema,
  batchCreateBodySchema,
  batchListQuerySchema,
  defaultOutputLocation,
  toApiBatch,
} from '../../../common/contracts/batch-api.ts';
import { FleetError } from '../../../common/errors.ts';
import { buildSpec } from '../../../producer/batch/batch-service.ts';

const ID = 'batch_0190000000001234abcd';
const T0 = 1_750_000_000_123; // ms

function state(status: BatchStatus, patch: Partial<BatchState> = {}): BatchState {
  return {
    spec: {
      id: ID,
      endpoint: '/v1/chat/completions',
      model: 'tiny',
      input: 'file:///data/in.jsonl',
      outputPrefix: `file:///data/${ID}/`,
      completionWindow: '24h',
      createdAt: T0,
      expiresAt: T0 + 86_400_000,
      metadata: { team: 'nlp' },
      priority: 3,
      tenant: 'acme',
      source: 'api',
    },
    status,
    stop: null,
    planned: false,
    plan: null,
    errors: [],
    timestamps: {},
    counters: {
      total: 0,
      completed: 0,
      failed: 0,
      chunks: 0,
      plan_chunks: 0,
      cursor: 0,
      plan_byte: 0,
      admitted: 0,
      settled: 0,
      not_run: 0,
    },
    files: { output: null, error: null, manifest: null },
    ...patch,
  };
}

const counters = (c: Partial<BatchState['counters']>): BatchState['counters'] => ({
  ...state('validating').counters,
  ...c,
});

describe('toApiBatch', () => {
  it('gives a validating batch with seconds, nulls and our fields', () => {
    const b = toApiBatch(state('validating'));
    expect(apiBatchSchema.parse(b)).toEqual(b);
    expect(b).toMatchObject({
      id: ID,
      object: 'batch',
      endpoint: '/v1/chat/completions',
      errors: null,
      input_file_id: 'file:///data/in.jsonl',
      input_file: 'file:///data/in.jsonl',
      completion_window: '24h',
      status: 'validating',
      output_file_id: null,
      error_file_id: null,
      created_at: 1_750_000_000,
      expires_at: 1_750_086_400,
      in_progress_at: null,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: 0, completed: 0, failed: 0 },
      metadata: { team: 'nlp' },
      model: 'tiny',
      output_location: `file:///data/${ID}/`,
      output_file: null,
      error_file: null,
      manifest_file: null,
      priority: 3,
      tenant: 'acme',
      source: 'api',
      progress: { chunks_total: 0, chunks_done: 0, lines_done: 0 },
    });
  });

  it('counts progress of an in_progress batch', () => {
    const b = toApiBatch(
      state('in_progress', {
        planned: true,
        timestamps: { in_progress_at: T0 + 2_999 },
        counters: counters({ total: 100, completed: 40, failed: 2, chunks: 10, settled: 4, cursor: 6, admitted: 6 }),
      }),
    );
    expect(b.in_progress_at).toBe(1_750_000_003);
    expect(b.request_counts).toEqual({ total: 100, completed: 40, failed: 2 });
    expect(b.progress).toEqual({ chunks_total: 10, chunks_done: 4, lines_done: 42 });
  });

  const files = {
    output: `file:///data/${ID}/output.jsonl`,
    error: `file:///data/${ID}/errors.jsonl`,
    manifest: `file:///data/${ID}/manifest.json`,
  };

  it.each([
    ['completed', { in_progress_at: T0 + 1000, finalizing_at: T0 + 5000, completed_at: T0 + 6000 }],
    ['expired', { in_progress_at: T0 + 1000, finalizing_at: T0 + 5000, expired_at: T0 + 6000 }],
    ['cancelled', { in_progress_at: T0 + 1000, cancelling_at: T0 + 5000, cancelled_at: T0 + 6000 }],
  ] as const)('gives the files and timestamps of a %s batch', (status, timestamps) => {
    const b = toApiBatch(state(status, { timestamps, files }));
    expect(b.status).toBe(status);
    expect(b.output_file_id).toBe(files.output);
    expect(b.error_file_id).toBe(files.error);
    expect(b.output_file).toBe(files.output);
    expect(b.manifest_file).toBe(files.manifest);
    for (const [field, ms] of Object.entries(timestamps)) {
      expect(b[field as keyof typeof timestamps]).toBe(Math.floor(ms / 1000));
    }
  });

  it('lists the errors of a failed batch in OpenAI shape', () => {
    const b = toApiBatch(
      state('failed', {
        timestamps: { failed_at: T0 + 500 },
        errors: [
          {
            code: 'input_not_found',
            message: 'input file:///data/in.jsonl: not found',
            line: null,
            param: 'input_file',
          },
        ],
      }),
    );
    expect(b.failed_at).toBe(1_750_000_000);
    expect(b.errors).toEqual({
      object: 'list',
      data: [
        { code: 'input_not_found', message: 'input file:///data/in.jsonl: not found', param: 'input_file', line: null },
      ],
    });
    expect(b.output_file_id).toBeNull();
  });

  it('shows a cancelling batch with its cancelling_at', () => {
    const b = toApiBatch(state('cancelling', { stop: 'cancelled', timestamps: { cancelling_at: T0 + 10_000 } }));
    expect(b).toMatchObject({ status: 'cancelling', cancelling_at: 1_750_000_010, cancelled_at: null });
  });
});

describe('defaultOutputLocation', () => {
  it.each([
    ['file:///data/in.jsonl', `file:///data/${ID}/`],
    ['file:///data/day/', `file:///data/${ID}/`],
    ['file:///in.jsonl', `file:///${ID}/`],
    ['file:///data/my%20files/in.jsonl', `file:///data/my%20files/${ID}/`],
    ['gs://bkt/in.jsonl', `gs://bkt/${ID}/`],
    ['gs://bkt/day/', `gs://bkt/${ID}/`],
    ['gs://bkt/2026/01/02/part-', `gs://bkt/2026/01/02/${ID}/`],
    ['gs://bkt', `gs://bkt/${ID}/`],
    ['oci://bkt@ns/in/x.jsonl', `oci://bkt@ns/in/${ID}/`],
    ['oci://bkt@ns/day/', `oci://bkt@ns/${ID}/`],
  ])('puts the output of %s in %s', (input, expected) => {
    expect(defaultOutputLocation(input, ID)).toBe(expected);
  });
});

describe('create body', () => {
  const valid = { input_file: 'file:///data/in.jsonl', endpoint: '/v1/chat/completions' };

  it('fills the defaults (no tenant: the route fills the API key’s)', () => {
    expect(batchCreateBodySchema.parse(valid)).toEqual({
      ...valid,
      completion_window: '24h',
      priority: 0,
    });
    expect(batchCreateBodySchema.parse({ input_file_id: 'gs://bkt/x/', endpoint: '/v1/infer' }).input_file_id).toBe(
      'gs://bkt/x/',
    );
  });

  it.each([
    ['no input', { endpoint: '/v1/infer' }, 'input_file', 'input_file is required'],
    ['both input names', { ...valid, input_file_id: 'gs://bkt/x' }, 'input_file_id', 'not both'],
    ['an s3 input', { ...valid, input_file: 's3://bkt/x' }, 'input_file', 'expected one of file://, gs://, oci://'],
    ['another endpoint', { ...valid, endpoint: '/v1/embeddings' }, 'endpoint', 'endpoint must be one of'],
    ['a window in words', { ...valid, completion_window: '1 day' }, 'completion_window', 'positive duration'],
    ['a zero window', { ...valid, completion_window: '0h' }, 'completion_window', 'positive duration'],
    ['priority 10', { ...valid, priority: 10 }, 'priority', 'priority is 0 to 9'],
    ['a long tenant', { ...valid, tenant: 'x'.repeat(65) }, 'tenant', 'at most 64'],
    ['a number in metadata', { ...valid, metadata: { k: 1 } }, 'metadata.k', 'metadata values must be strings'],
    ['a long metadata key', { ...valid, metadata: { ['k'.repeat(65)]: 'v' } }, 'metadata.kkk', 'keys are at most 64'],
    ['a long metadata value', { ...valid, metadata: { k: 'v'.repeat(513) } }, 'metadata.k', 'at most 512'],
    [
      '17 metadata pairs',
      { ...valid, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
      'metadata',
      'at most 16 key-value pairs',
    ],
    [
      'an unknown field',
      { ...valid, output_expires_after: { seconds: 3600 } },
      '',
      'unsupported field(s): output_expires_after',
    ],
  ])('rejects %s', (_label, body, path, message) => {
    const found = batchCreateBodySchema.safeParse(body).error?.issues ?? [];
    expect(found.map((i) => ({ path: i.path.join('.'), message: i.message }))).toContainEqual({
      path: path === '' ? '' : expect.stringMatching(new RegExp(`^${path}`)),
      message: expect.stringContaining(message),
    });
  });

  it('accepts OpenAI-style null metadata', () => {
    expect(batchCreateBodySchema.parse({ ...valid, metadata: null }).metadata).toBeNull();
  });

  it('bounds the list query', () => {
    expect(batchListQuerySchema.parse({})).toEqual({ limit: 20 });
    expect(batchListQuerySchema.parse({ limit: '5', after: ID })).toEqual({ limit: 5, after: ID });
    expect(batchListQuerySchema.safeParse({ limit: '0' }).error?.issues[0]?.message).toBe('limit is 1 to 100');
    expect(batchListQuerySchema.safeParse({ limit: '101' }).error?.issues[0]?.message).toBe('limit is 1 to 100');
    expect(batchListQuerySchema.safeParse({ after: 'batch_x' }).error?.issues[0]?.path).toEqual(['after']);
  });
});

describe('buildSpec', () => {
  const limits = { pools: ['tiny', 'big'], maxCompletionWindowMs: 7 * 86_400_000 };
  const ids = { id: ID, now: T0, source: 'api' };
  const body = (extra: Record<string, unknown> = {}) =>
    batchCreateBodySchema.parse({ input_file: 'gs://bkt/day/', endpoint: '/v1/infer', ...extra });

  it('fills model, output location and expiry', () => {
    expect(buildSpec(body({ completion_window: '90m' }), limits, ids)).toEqual({
      id: ID,
      endpoint: '/v1/infer',
      model: 'tiny',
      input: 'gs://bkt/day/',
      outputPrefix: `gs://bkt/${ID}/`,
      completionWindow: '90m',
      createdAt: T0,
      expiresAt: T0 + 90 * 60_000,
      metadata: null,
      priority: 0,
      tenant: 'default',
      source: 'api',
    });
  });

  it('makes the output location a folder', () => {
    expect(buildSpec(body({ output_location: 'gs://bkt/out' }), limits, ids).outputPrefix).toBe('gs://bkt/out/');
    expect(buildSpec(body({ output_location: 'oci://o@ns/r/' }), limits, ids).outputPrefix).toBe('oci://o@ns/r/');
  });

  it('rejects a window over the limit, naming the field', () => {
    const err = catchError(() => buildSpec(body({ completion_window: '8d' }), limits, ids));
    expect(err).toMatchObject({ code: 'bad_request', param: 'completion_window' });
    expect(err.message).toBe('completion_window 8d is longer than the limit of 7d');
  });

  it('rejects an unknown pool with 404', () => {
    const err = catchError(() => buildSpec(body({ model: 'nope' }), limits, ids));
    expect(err).toMatchObject({ code: 'model_not_found', status: 404, param: 'model' });
    expect(err.message).toContain('available: tiny, big');
  });
});

function catchError(fn: () => unknown): FleetError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('expected a FleetError');
}
