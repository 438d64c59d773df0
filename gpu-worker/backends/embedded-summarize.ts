/**
 * Extractive summaries by TextRank (Mihalcea & Tarau, EMNLP 2004): sentences
 * are nodes, edges weigh the content words two sentences share normalised by
 * their lengths, and PageRank over that graph ranks the sentences most
 * "recommended" by the rest of the text. The top `maxSentences` are kept in
 * their original order.
 *
 * Why not wink-nlp's own `its.sentenceWiseImportance`: it scores part-of-speech
 * n-gram frequency, ties most sentences at 0 on short texts, and needs the POS
 * tagger in the pipe; TextRank is the standard unsupervised baseline and needs
 * only sentence boundaries and stems.
 */
import type { SummarizeOutput } from '../../common/contracts/tasks.ts';
import type { Nlp } from './embedded-nlp.ts';

const DAMPING = 0.85;
const MAX_ITERATIONS = 50;
const TOLERANCE = 1e-6;

/** Content-word overlap normalised by sentence length (the paper's similarity). */
export function sentenceSimilarity(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 || b.size === 0) return 0;
  let shared = 0;
  for (const word of a) if (b.has(word)) shared += 1;
  if (shared === 0) return 0;
  // +1 inside the logs keeps one-word sentences from dividing by zero.
  return shared / (Math.log(a.size + 1) + Math.log(b.size + 1));
}

/** Weighted PageRank over a symmetric similarity matrix; returns one score per node. */
export function textRank(weights: readonly (readonly number[])[]): number[] {
  const n = weights.length;
  const outSum = weights.map((row) => row.reduce((s, w) => s + w, 0));
  let scores = new Array<number>(n).fill(1 / n);
  for (let iter = 0; iter < MAX_ITERATIONS; iter += 1) {
    const next = scores.map((_, i) => {
      let inflow = 0;
      for (let j = 0; j < n; j += 1) {
        const w = weights[j]![i]!;
        if (w > 0) inflow += (w / outSum[j]!) * scores[j]!;
      }
      return (1 - DAMPING) / n + DAMPING * inflow;
    });
    const delta = next.reduce((s, v, i) => s + Math.abs(v - scores[i]!), 0);
    scores = next;
    if (delta < TOLERANCE) break;
  }
  return scores;
}

export interface Summarizer {
  summarize(text: string, maxSentences: number): SummarizeOutput;
}

export function createSummarizer(nlp: Nlp): Summarizer {
  return {
    summarize(text, maxSentences) {
      const sentences = nlp.sentences(text);
      let kept = sentences.map((_, i) => i);
      if (sentences.length > maxSentences) {
        const terms = sentences.map((s) => new Set(s.terms));
        const weights = terms.map((a, i) => terms.map((b, j) => (i === j ? 0 : sentenceSimilarity(a, b))));
        const scores = textRank(weights);
        // Highest score first; ties go to the earlier sentence (leads carry the topic).
        kept = kept
          .sort((i, j) => scores[j]! - scores[i]! || i - j)
          .slice(0, maxSentences)
          .sort((i, j) => i - j);
      }
      return { task: 'summarize', summary: kept.map((i) => sentences[i]!.text).join(' '), sentences: kept };
    },
  };
}
