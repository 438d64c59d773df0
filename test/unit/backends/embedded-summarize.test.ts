import { describe, expect, it } from 'vitest';
import { createNlp, createSummarizer } from '../../../gpu-worker/backends/index.ts';
import { sentenceSimilarity, textRank } from '../../../gpu-worker/backends/embedded-summarize.ts';

const summarizer = createSummarizer(createNlp());

const SENTENCES = [
  'The Apollo program was the third United States human spaceflight program run by NASA.',
  'Cats like to sleep in the sun.',
  'The Apollo program succeeded in landing the first humans on the Moon in 1969.',
  'My neighbour bought a new car.',
  'NASA flew the Apollo missions on Saturn rockets.',
  'Apollo astronauts brought back lunar rocks from the Moon.',
];
const APOLLO = SENTENCES.join(' ');

describe('embedded summarize (TextRank)', () => {
  it.each([1, 2, 3, 4])('keeps at most %i sentences, in their original order', (maxSentences) => {
    const out = summarizer.summarize(APOLLO, maxSentences);
    expect(out.task).toBe('summarize');
    expect(out.sentences).toHaveLength(maxSentences);
    expect(out.sentences).toEqual([...out.sentences].sort((a, b) => a - b));
    // The summary is the kept sentences, verbatim and in order.
    expect(out.summary).toBe(out.sentences.map((i) => SENTENCES[i]).join(' '));
  });

  it('prefers the sentences the rest of the text is about', () => {
    const out = summarizer.summarize(APOLLO, 3);
    expect(out.sentences).not.toContain(1); // cats
    expect(out.sentences).not.toContain(3); // the car
  });

  it('returns a short text whole', () => {
    expect(summarizer.summarize('One sentence. Two sentences.', 3)).toEqual({
      task: 'summarize',
      summary: 'One sentence. Two sentences.',
      sentences: [0, 1],
    });
  });

  it.each([
    { a: [], b: ['x'], expected: 0 },
    { a: ['x', 'y'], b: ['z'], expected: 0 },
    { a: ['x'], b: ['x'], expected: 1 / (2 * Math.log(2)) },
  ])('sentenceSimilarity($a, $b) = $expected', ({ a, b, expected }) => {
    expect(sentenceSimilarity(new Set(a), new Set(b))).toBeCloseTo(expected);
  });

  it('textRank ranks the hub of a star graph first', () => {
    const star = [
      [0, 1, 1, 1],
      [1, 0, 0, 0],
      [1, 0, 0, 0],
      [1, 0, 0, 0],
    ];
    const scores = textRank(star);
    expect(Math.max(...scores)).toBe(scores[0]);
  });
});
