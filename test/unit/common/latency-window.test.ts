import { describe, expect, it } from 'vitest';
import {
  bucketOf,
  countAboveMs,
  emptyCounts,
  LatencyWindow,
  mergeCounts,
  quantileMs,
  totalCount,
  windowBoundsMs,
} from '../../../common/latency-window.ts';

describe('latency window', () => {
  it.each([
    [0, 0],
    [1, 0],
    [1.0001, 1],
    [1.25, 1],
    [1.26, 2],
    [windowBoundsMs.at(-1)!, windowBoundsMs.length - 1],
    [windowBoundsMs.at(-1)! + 1, windowBoundsMs.length],
    [1e9, windowBoundsMs.length],
  ])('puts %f ms in bucket %i', (ms, bucket) => {
    expect(bucketOf(ms)).toBe(bucket);
  });

  it.each([
    ['uniform 1..1000 ms, p50', Array.from({ length: 1000 }, (_, i) => i + 1), 0.5, 500],
    ['uniform 1..1000 ms, p99', Array.from({ length: 1000 }, (_, i) => i + 1), 0.99, 990],
    ['all 200 ms, p99', new Array(50).fill(200), 0.99, 200],
    ['99 fast and one slow, p99', [...new Array(99).fill(10), 5000], 0.99, 10],
    ['98 fast and two slow, p99', [...new Array(98).fill(10), 5000, 5000], 0.99, 5000],
  ])('reads back %s within a bucket (25 %%)', (_name, samples, q, want) => {
    const counts = emptyCounts();
    for (const ms of samples) counts[bucketOf(ms)]!++;
    const got = quantileMs(counts, q)!;
    expect(got).toBeGreaterThanOrEqual(want / 1.25);
    expect(got).toBeLessThanOrEqual(want * 1.25);
  });

  it.each([
    ['none above', [...new Array(10).fill(10)], 100, 0, 0],
    ['whole buckets above', [10, 10, 500, 900], 100, 2, 2],
    ['overflow counts in full', [1e9, 10], windowBoundsMs.at(-1)! + 1, 1, 1],
    // 100 ms sits inside (86.7, 108.4]: the 5 samples of that bucket count in proportion (5 × 8.4 / 21.7 ≈ 1.9).
    ['the straddled bucket in proportion', new Array(5).fill(100), 100, 1.5, 2.5],
  ])('counts samples over a threshold: %s', (_name, samples, ms, low, high) => {
    const counts = emptyCounts();
    for (const x of samples) counts[bucketOf(x)]!++;
    const got = countAboveMs(counts, ms);
    expect(got).toBeGreaterThanOrEqual(low);
    expect(got).toBeLessThanOrEqual(high);
  });

  it('has no quantile without samples, and a very large one for overflow', () => {
    expect(quantileMs(emptyCounts(), 0.99)).toBeUndefined();
    const counts = emptyCounts();
    counts[windowBoundsMs.length] = 3;
    expect(quantileMs(counts, 0.5)).toBe(windowBoundsMs.at(-1)! * 2);
  });

  it('forgets samples once they leave the window, a slice at a time', () => {
    const w = new LatencyWindow(10_000, 5); // slices of 2 s
    w.record(5, 0);
    w.record(50, 3_000);
    w.record(500, 9_999);
    expect(totalCount(w.counts(9_999))).toBe(3);
    expect(totalCount(w.counts(10_000))).toBe(2); // the slice [0, 2 s) has left
    expect(totalCount(w.counts(11_999))).toBe(2); // [2 s, 4 s) is still inside
    expect(totalCount(w.counts(12_000))).toBe(1); // ... and leaves when the window no longer covers its start
    expect(quantileMs(w.counts(12_000), 1)).toBeGreaterThan(400);
    expect(totalCount(w.counts(20_000))).toBe(0);
    // A slice reused after a full turn starts from zero.
    w.record(7, 20_500);
    expect(w.counts(20_500)[bucketOf(7)]).toBe(1);
    expect(totalCount(w.counts(20_500))).toBe(1);
  });

  it('merges workers by adding buckets, so the pool quantile is over every sample', () => {
    const fast = emptyCounts();
    const slow = emptyCounts();
    fast[bucketOf(10)] = 90;
    slow[bucketOf(1000)] = 10;
    const pool = mergeCounts([fast, slow]);
    expect(totalCount(pool)).toBe(100);
    expect(quantileMs(pool, 0.5)!).toBeLessThan(12.5);
    expect(quantileMs(pool, 0.95)!).toBeGreaterThan(800);
  });
});
