/**
 * The one wink-nlp instance the embedded sentiment classifier and summarizer
 * share, behind a narrow typed interface. Building it costs ~60 ms (the
 * English model compiles its tables), so the embedded backend builds it once
 * and hands it to both; wink's loose typings stay inside this file.
 */
import winkNLP from 'wink-nlp';
import type { ItemSentence, ItemToken, ItsFunction } from 'wink-nlp';
import model from 'wink-eng-lite-web-model';

export interface NlpSentence {
  /** The sentence as written. */
  text: string;
  /** Stems of its content words (no stop words, punctuation, numbers or symbols). */
  terms: string[];
}

export interface Nlp {
  /** wink's lexicon sentiment of the whole text, in [-1, 1]. */
  sentiment(text: string): number;
  sentences(text: string): NlpSentence[];
}

export function createNlp(): Nlp {
  // Pipe: sentence boundaries (summaries; negation stops at a sentence end),
  // negation and sentiment. POS and NER are left out: no task reads them, and
  // they would roughly double the cost per text.
  const nlp = winkNLP(model, ['sbd', 'negation', 'sentiment']);
  // wink checks `its` helpers by identity, so they are passed unbound (they use no `this`).
  /* eslint-disable @typescript-eslint/unbound-method */
  const { sentiment, type, stopWordFlag } = nlp.its;
  // Typed as taking the model's addons, which wink passes; its declared signature disagrees.
  const stem = nlp.its.stem as ItsFunction<string>;
  /* eslint-enable @typescript-eslint/unbound-method */

  return {
    sentiment(text) {
      const score = nlp.readDoc(text).out(sentiment);
      return typeof score === 'number' ? Math.max(-1, Math.min(1, score)) : 0;
    },
    sentences(text) {
      const out: NlpSentence[] = [];
      nlp
        .readDoc(text)
        .sentences()
        .each((sentence: ItemSentence) => {
          const content = sentence
            .tokens()
            .filter((t: ItemToken) => t.out(type) === 'word' && t.out(stopWordFlag) !== true);
          out.push({ text: sentence.out(), terms: content.out(stem) });
        });
      return out;
    },
  };
}
