import { describe, expect, it } from 'vitest';
import { FleetError } from '../../../common/errors.ts';
import { StorageError } from '../../../common/storage/index.ts';
import { reduceFailure, type ReduceStep } from '../../../gpu-worker/training/reduce-failure.ts';

const cases: { name: string; step: ReduceStep; err: unknown; retryable: boolean; message: RegExp }[] = [
  {
    name: "storage unavailable while pulling the ranks' outputs: retried",
    step: 'reduce',
    err: new StorageError('unavailable', 'HTTP 503'),
    retryable: true,
    message: /^reducing the checkpoints failed \(unavailable\): HTTP 503$/,
  },
  {
    name: 'storage refusing for good: not retried',
    step: 'reduce',
    err: new StorageError('permission_denied', 'HTTP 403'),
    retryable: false,
    message: /\(permission_denied\)/,
  },
  {
    name: 'a checkpoint gone while uploading the model: not retried',
    step: 'push',
    err: new StorageError('not_found', 'no bucket'),
    retryable: false,
    message: /^uploading the model failed \(not_found\)/,
  },
  {
    name: "the worker's own disk while reading the model to upload: retried",
    step: 'push',
    err: Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }),
    retryable: true,
    message: /ENOSPC/,
  },
  {
    name: 'bad inputs to the average: not retried',
    step: 'reduce',
    err: new Error('tensor w: shapes differ'),
    retryable: false,
    message: /^reducing the checkpoints failed: tensor w: shapes differ$/,
  },
  {
    name: 'Redis lost while moving the gang on: retried',
    step: 'settle',
    err: new Error('Connection is closed.'),
    retryable: true,
    message: /^moving the job to its next round failed: /,
  },
  {
    name: 'a catalogued error carries its own retryable',
    step: 'settle',
    err: new FleetError('unavailable', 'redis down'),
    retryable: true,
    message: /\(unavailable\)/,
  },
  {
    name: 'a catalogued permanent error',
    step: 'reduce',
    err: new FleetError('bad_request', 'bad uri'),
    retryable: false,
    message: /\(bad_request\)/,
  },
];

describe('reduceFailure', () => {
  it.each(cases)('$name', ({ step, err, retryable, message }) => {
    const f = reduceFailure(step, err);
    expect(f.retryable).toBe(retryable);
    expect(f.message).toMatch(message);
  });
});
