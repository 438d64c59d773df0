import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createNlp, createSentimentClassifier, sentimentLabel } from '../../../gpu-worker/backends/index.ts';

const classifier = createSentimentClassifier(createNlp());
// The project's shared data folder sits beside the repository; without it the accuracy test is skipped.
const DATA = fileURLToPath(new URL('../../../../shared/data/sentiment-labelled-sentences', import.meta.url));
const FILES = ['amazon_cells_labelled.txt', 'imdb_labelled.txt', 'yelp_labelled.txt'];

/** `sentence<TAB>label` rows; the IMDb file pads the tab and ends lines oddly, so split on any terminator. */
function readLabelled(file: string): { text: string; positive: boolean }[] {
  return readFileSync(`${DATA}/${file}`, 'utf8')
    .split(/\r\n|\r|\n/)
    .map((line) => /^(.*?)\s*\t\s*([01])\s*$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({ text: m[1]!, positive: m[2] === '1' }));
}

describe('embedded sentiment', () => {
  it.each([
    { text: 'I love this phone, the battery is excellent!', label: 'positive' },
    { text: 'This was the worst meal I have ever had.', label: 'negative' },
    { text: 'The food was not good at all.', label: 'negative' },
    { text: 'The package arrived on Tuesday.', label: 'neutral' },
  ] as const)('labels "$text" $label', ({ text, label }) => {
    const out = classifier.classify(text);
    expect(out.label).toBe(label);
    expect(out.score).toBeGreaterThanOrEqual(-1);
    expect(out.score).toBeLessThanOrEqual(1);
  });

  it.each([
    { score: 0, label: 'neutral' },
    { score: 0.005, label: 'neutral' },
    { score: 0.2, label: 'positive' },
    { score: -0.2, label: 'negative' },
  ] as const)('labels score $score $label', ({ score, label }) => {
    expect(sentimentLabel(score)).toBe(label);
  });

  it('classifyMany keeps the order of its input', () => {
    const texts = ['great', 'awful', 'a chair'];
    expect(classifier.classifyMany(texts)).toEqual(texts.map((t) => classifier.classify(t)));
  });

  it.skipIf(!existsSync(DATA))('is accurate on the 3,000 UCI labelled sentences (neutral counts as wrong)', () => {
    const rows = FILES.flatMap(readLabelled);
    expect(rows).toHaveLength(3000);
    const started = performance.now();
    const outs = classifier.classifyMany(rows.map((r) => r.text));
    const ms = performance.now() - started;
    const right = outs.filter((o, i) => o.label === (rows[i]!.positive ? 'positive' : 'negative')).length;
    const decided = outs.filter((o) => o.label !== 'neutral').length;
    const accuracy = right / rows.length;
    console.log(
      `sentiment: accuracy ${(accuracy * 100).toFixed(1)}% (${right}/${rows.length}); ` +
        `on the ${decided} not labelled neutral ${((right / decided) * 100).toFixed(1)}%; ` +
        `${Math.round(rows.length / (ms / 1000))} texts/s`,
    );
    expect(accuracy).toBeGreaterThan(0.6);
  });
});
