/**
 * The pure parts of a training job's results: the results fields of the job
 * body (each error with its field), the webhook signature (tampering, another
 * secret, a stale timestamp), the delivery backoff, the model checksum (the
 * sha256sum listing it documents), and per-round summaries.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { trainingJobBodySchema } from '../../../common/contracts/training.ts';
import { sentimentInputSchema } from '../../../common/contracts/tasks.ts';
import { modelChecksum } from '../../../common/training/model-checksum.ts';
import { summarizeRounds } from '../../../common/training/training-results.ts';
import type { RankEntry } from '../../../common/training/training-state.ts';
import { signWebhook, verifyWebhook } from '../../../common/training/webhook-signature.ts';
import { nextAttemptAt } from '../../../scheduler/training-finisher.ts';

const valid = {
  pool: 'p',
  command: 'builtin:text-classifier',
  data_uri: 'file:///data/',
  checkpoint_uri: 'file:///runs/1/',
  workers: 3,
};

function firstIssue(body: unknown): string | undefined {
  const r = trainingJobBodySchema.safeParse(body);
  if (r.success) return undefined;
  const i = r.error.issues[0]!;
  return `${i.path.join('.') || '(body)'}: ${i.message}`;
}

describe('results fields of a training job', () => {
  it.each([
    [
      { eval_uri: 'file:///data/eval.tsv', model_name: 'uci-sentiment', webhook_url: 'https://hooks.example.com/t' },
      undefined,
    ],
    [{ eval_uri: 'ftp://x/eval.tsv' }, /^eval_uri: /],
    [{ model_name: 'Has Spaces' }, /^model_name: a model name is 1 to 64 lower-case/],
    [{ model_name: '' }, /^model_name: /],
    [{ model_name: 'x'.repeat(65) }, /^model_name: /],
    [{ webhook_url: 'ftp://hooks.example.com/' }, /^webhook_url: webhook_url must be an http:\/\/ or https:\/\/ URL/],
    [{ webhook_url: 'not a url' }, /^webhook_url: /],
  ])('%j', (extra, expected) => {
    const issue = firstIssue({ ...valid, ...extra });
    if (expected === undefined) expect(issue).toBeUndefined();
    else expect(issue).toMatch(expected);
  });

  it('lets a sentiment input name a trained model, checked as a name', () => {
    expect(sentimentInputSchema.parse({ task: 'sentiment', text: 'ok', model: 'm-1' })).toEqual({
      task: 'sentiment',
      text: 'ok',
      model: 'm-1',
    });
    expect(sentimentInputSchema.safeParse({ task: 'sentiment', text: 'ok', model: 'M 1' }).success).toBe(false);
  });
});

describe('webhook signature', () => {
  const secret = 'a-secret-of-some-length';
  const body = '{"type":"training.job.ended"}';
  const header = signWebhook(secret, body, 1_700_000_000);

  it('is HMAC-SHA256 of "<t>.<body>", verified within the tolerance only', () => {
    expect(header).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(secret, body, header, 1_700_000_010)).toBe(true);
    expect(verifyWebhook(secret, `${body} `, header, 1_700_000_010)).toBe(false);
    expect(verifyWebhook('another-secret-value', body, header, 1_700_000_010)).toBe(false);
    expect(verifyWebhook(secret, body, header, 1_700_000_000 + 301)).toBe(false);
    expect(verifyWebhook(secret, body, 'garbage', 1_700_000_000)).toBe(false);
    expect(verifyWebhook(secret, body, header.replace(/v1=../, 'v1=00'), 1_700_000_000)).toBe(false);
  });

  it('backs off by doubling from backoffMs', () => {
    expect([1, 2, 3, 4].map((a) => nextAttemptAt(0, a, 1000))).toEqual([1000, 2000, 4000, 8000]);
  });
});

describe('model checksum', () => {
  it('is the sha256 of the sha256sum listing of the files, sorted by path', () => {
    const files = [
      { path: 'weights.f32', bytes: 3, sha256: createHash('sha256').update('abc').digest('hex') },
      { path: 'model.json', bytes: 2, sha256: createHash('sha256').update('{}').digest('hex') },
    ];
    const listing = `${files[1]!.sha256}  model.json\n${files[0]!.sha256}  weights.f32\n`;
    expect(modelChecksum(files)).toBe(createHash('sha256').update(listing).digest('hex'));
    expect(modelChecksum([...files].reverse())).toBe(modelChecksum(files));
  });
});

describe('per-round summaries', () => {
  const rank = (round: number, r: number, metrics: Record<string, number>, ended: number | null = 2000): RankEntry => ({
    round,
    rank: r,
    state: ended === null ? 'running' : 'succeeded',
    worker: 'w',
    restart: 0,
    startedAt: 1000 + r * 100,
    endedAt: ended === null ? null : ended + r * 100,
    exitCode: ended === null ? null : 0,
    reason: null,
    metrics,
    checkpointUri: 'file:///x/',
  });

  it('means each metric over the ranks and spans first start to last end', () => {
    expect(
      summarizeRounds([rank(1, 0, { loss: 1, acc: 0.5 }), rank(1, 1, { loss: 3 }), rank(2, 0, { loss: 0.5 }, null)]),
    ).toEqual([
      {
        round: 1,
        ranks: 2,
        ranks_succeeded: 2,
        started_at: 1,
        ended_at: 2,
        duration_ms: 1100,
        metrics: { loss: 2, acc: 0.5 },
        rank_metrics: [{ loss: 1, acc: 0.5 }, { loss: 3 }],
      },
      {
        round: 2,
        ranks: 1,
        ranks_succeeded: 0,
        started_at: 1,
        ended_at: null,
        duration_ms: null,
        metrics: { loss: 0.5 },
        rank_metrics: [{ loss: 0.5 }],
      },
    ]);
  });
});
