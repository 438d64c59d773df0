import { describe, expect, it } from 'vitest';
import { BatchFileError, parseBatches } from '../../../common/autoscale/replay/batches.ts';
import { parseTrace, shapeTrace, TraceError } from '../../../common/autoscale/replay/trace.ts';

const azure = `TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:47.5000000,100,20
2023-11-16 18:15:46.6805900,1000,200
`;

describe('parseTrace', () => {
  it('reads the Azure form, sorted, times from the first arrival', () => {
    const t = parseTrace(azure, 'a.csv');
    expect(t.startAt).toBe(Date.parse('2023-11-16T18:15:46Z') + 680.59);
    expect(t.requests.map((r) => [Math.round(r.arrivalMs), r.promptTokens, r.outputTokens])).toEqual([
      [0, 1000, 200],
      [819, 100, 20],
    ]);
  });

  it('reads the generic form', () => {
    const t = parseTrace('seconds,promptTokens,outputTokens\n1.5,10,2\n0.5,20,3\n');
    expect(t.startAt).toBe(0);
    expect(t.requests).toEqual([
      { arrivalMs: 0, promptTokens: 20, outputTokens: 3 },
      { arrivalMs: 1000, promptTokens: 10, outputTokens: 2 },
    ]);
  });

  it('reports every malformed row with its line, at once', () => {
    const bad = `${azure}2023-11-16 nope,1,1\n2023-11-16 18:15:48.0,0,5\n2023-11-16 18:15:49.0,1\n`;
    const err = (() => {
      try {
        parseTrace(bad, 'bad.csv');
      } catch (e) {
        return e as TraceError;
      }
    })();
    expect(err).toBeInstanceOf(TraceError);
    expect(err!.issues).toHaveLength(3);
    expect(err!.issues[0]).toMatch(/^bad\.csv:4: at: expected a time/);
    expect(err!.issues[1]).toMatch(/^bad\.csv:5: promptTokens: expected at least 1/);
    expect(err!.issues[2]).toMatch(/^bad\.csv:6: expected 3 fields, found 2/);
  });

  it('refuses an unknown header and an empty trace', () => {
    expect(() => parseTrace('a,b,c\n1,2,3\n', 'x.csv')).toThrow(/x\.csv:1: unexpected header/);
    expect(() => parseTrace('seconds,promptTokens,outputTokens\n', 'x.csv')).toThrow(/no requests/);
  });
});

describe('shapeTrace', () => {
  const reqs = Array.from({ length: 1000 }, (_, i) => ({ arrivalMs: i * 100, promptTokens: 10, outputTokens: 1 }));
  it('compresses time and scales load, deterministically', () => {
    expect(shapeTrace(reqs, { compress: 2 }).at(-1)!.arrivalMs).toBe(49_950);
    const a = shapeTrace(reqs, { scale: 2.5, seed: 7 });
    expect(a.length).toBeGreaterThan(2300);
    expect(a.length).toBeLessThan(2700);
    expect(a).toEqual(shapeTrace(reqs, { scale: 2.5, seed: 7 }));
    expect(a.every((r, i) => i === 0 || r.arrivalMs >= a[i - 1]!.arrivalMs)).toBe(true);
    expect(Math.min(...a.map((r) => r.arrivalMs))).toBeGreaterThanOrEqual(0);
  });
});

describe('parseBatches', () => {
  it('reads a list or a mapping with the record shape', () => {
    expect(parseBatches('[{ "id": "x", "records": 10, "arrivalS": 5, "windowS": 60 }]')).toEqual({
      record: { promptTokens: 512, outputTokens: 128 },
      batches: [{ id: 'x', records: 10, arrivalMs: 5000, deadlineMs: 65_000 }],
    });
    const set = parseBatches('record: { promptTokens: 100, outputTokens: 10 }\nbatches: []\n');
    expect(set.record).toEqual({ promptTokens: 100, outputTokens: 10 });
  });

  it('lists every problem with its path', () => {
    try {
      parseBatches('batches:\n  - { id: x, records: 0, arrivalS: -1, windowS: 10 }\n', 'b.yaml');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(BatchFileError);
      const text = (e as BatchFileError).issues.join('\n');
      expect(text).toContain('b.yaml: batches.0.records');
      expect(text).toContain('b.yaml: batches.0.arrivalS');
    }
    expect(() =>
      parseBatches(
        '- { id: x, records: 1, arrivalS: 0, windowS: 1 }\n- { id: x, records: 1, arrivalS: 0, windowS: 1 }\n',
      ),
    ).toThrow(/unique: x/);
  });
});
