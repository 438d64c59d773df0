import { describe, expect, it } from 'vitest';
import { expandUriTemplate, UriTemplateError } from '../../../common/batch/uri-template.ts';

const at = new Date('2026-11-28T02:00:00Z');

describe('expandUriTemplate', () => {
  it.each([
    ['gs://b/events/{date}/', 'UTC', 'gs://b/events/2026-11-28/'],
    ['gs://b/events/{date-1d}/', 'UTC', 'gs://b/events/2026-11-27/'],
    ['gs://b/{yyyy}/{mm}/{dd}/{hh}/x.jsonl', 'UTC', 'gs://b/2026/11/28/02/x.jsonl'],
    ['gs://b/{hh+23h}/', 'UTC', 'gs://b/01/'],
    ['gs://b/{date}/', 'America/Los_Angeles', 'gs://b/2026-11-27/'],
    ['file:///data/{date+3d}.jsonl', 'Asia/Tokyo', 'file:///data/2026-12-01.jsonl'],
    ['oci://bkt@ns/no-placeholders', 'UTC', 'oci://bkt@ns/no-placeholders'],
  ])('%s in %s → %s', (template, tz, expected) => {
    expect(expandUriTemplate(template, at, tz)).toBe(expected);
  });

  it('rejects unknown placeholders and time zones with a message naming them', () => {
    expect(() => expandUriTemplate('gs://b/{month}/', at)).toThrow(UriTemplateError);
    expect(() => expandUriTemplate('gs://b/{date}/', at, 'Mars/Olympus')).toThrow(/unknown time zone "Mars\/Olympus"/);
  });
});
