import { describe, expect, it } from 'vitest';
import {
  formatStorageUri,
  objectUriSchema,
  parseObjectUri,
  parseStorageUri,
  StorageError,
  storageUriSchema,
} from '../../../common/storage/index.ts';

describe('parseStorageUri', () => {
  it.each([
    ['file:///data/in.jsonl', { scheme: 'file', path: '/data/in.jsonl' }],
    ['file:///data/out/', { scheme: 'file', path: '/data/out/' }],
    ['file:///data/a%20b%23c.txt', { scheme: 'file', path: '/data/a b#c.txt' }],
    ['gs://my-bucket/batch/in.jsonl', { scheme: 'gs', bucket: 'my-bucket', key: 'batch/in.jsonl' }],
    ['gs://my.bucket_1/a b%20c', { scheme: 'gs', bucket: 'my.bucket_1', key: 'a b%20c' }], // keys are literal
    ['gs://my-bucket', { scheme: 'gs', bucket: 'my-bucket', key: '' }],
    ['gs://my-bucket/', { scheme: 'gs', bucket: 'my-bucket', key: '' }],
    [
      'oci://Data_Bucket@axaxnpcrorw5/in/part-1',
      { scheme: 'oci', namespace: 'axaxnpcrorw5', bucket: 'Data_Bucket', key: 'in/part-1' },
    ],
    ['oci://b@ns', { scheme: 'oci', namespace: 'ns', bucket: 'b', key: '' }],
  ])('parses %s', (uri, expected) => {
    expect(parseStorageUri(uri)).toEqual(expected);
  });

  it.each([
    ['s3://bucket/key', 'expected one of file://, gs://, oci://'],
    ['GS://bucket/key', 'write the scheme in lower case'],
    ['/data/in.jsonl', 'expected one of'],
    ['file://host/data', 'three slashes'],
    ['file:relative/path', 'three slashes'],
    ['file:///data/a?b', 'escape ? and #'],
    ['gs://B/key', 'bucket names are 3-63 lower-case'],
    ['gs://ab/key', 'bucket names are 3-63 lower-case'],
    ['gs://-bucket/key', 'bucket names'],
    ['gs:///key', 'bucket names'],
    [`gs://bucket/${'k'.repeat(1025)}`, 'at most 1024 bytes'],
    ['gs://bucket/a\nb', 'CR, LF or NUL'],
    ['oci://bucket/key', 'oci://bucket@namespace/key'],
    ['oci://@ns/key', 'OCI bucket names'],
    ['oci://bucket@/key', 'namespace after @'],
    ['oci://bucket@name.space/key', 'namespace after @'],
  ])('rejects %s with a clear message', (uri, message) => {
    let caught: unknown;
    try {
      parseStorageUri(uri);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(StorageError);
    expect((caught as StorageError).code).toBe('invalid_uri');
    expect((caught as StorageError).message).toContain(message);
    expect((caught as StorageError).retryable).toBe(false);
  });
});

describe('parseObjectUri', () => {
  it.each(['file:///data/', 'gs://bucket', 'gs://bucket/', 'gs://bucket/folder/', 'oci://b@ns', 'oci://b@ns/dir/'])(
    'rejects the folder or bucket %s',
    (uri) => {
      expect(() => parseObjectUri(uri)).toThrow('names a folder or bucket, not an object');
    },
  );

  it('accepts objects', () => {
    expect(parseObjectUri('oci://b@ns/x')).toEqual({ scheme: 'oci', namespace: 'ns', bucket: 'b', key: 'x' });
  });
});

describe('formatStorageUri', () => {
  it.each(['file:///data/a%20b.txt', 'gs://bucket/k/ey', 'oci://b@ns/k/ey', 'gs://bucket/'])(
    'round-trips %s',
    (uri) => {
      expect(formatStorageUri(parseStorageUri(uri))).toBe(uri);
    },
  );

  it('escapes file paths', () => {
    expect(formatStorageUri({ scheme: 'file', path: '/d/50%#?.txt' })).toBe('file:///d/50%25%23%3F.txt');
  });
});

describe('URI schemas for boundaries', () => {
  it('report the parse error as a zod issue', () => {
    const result = objectUriSchema.safeParse('gs://bucket/');
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toContain('not an object');
    expect(storageUriSchema.parse('gs://bucket/')).toBe('gs://bucket/');
  });
});
