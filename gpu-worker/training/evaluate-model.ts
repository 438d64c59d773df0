/**
 * Scores a built-in text model (linear-text-model.ts) on a held-out split:
 * every file under a directory, read line by line (memory: one line), each
 * line as the built-in trainer reads it: TSV `text<TAB>label` (the last tab
 * splits) or JSON `{"text", "label"}`. Lines whose label is not one of the
 * model's classes, blank and malformed lines are counted as skipped.
 */
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Evaluation } from '../../common/contracts/trained-models.ts';
import { featurize, probabilitiesOf, type LinearTextModel } from './builtin/linear-text-model.ts';
// The held-out split is read line by line exactly as the built-in trainer reads its data.
import { parseLine, type Example as LabelledText } from './builtin/train-linear.ts';

/** Every labelled line of every file under `dir`, in path order. */
export async function* labelledLines(dir: string): AsyncGenerator<LabelledText | undefined> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const line of lines) if (line.trim() !== '') yield parseLine(line);
  }
}

/** Accuracy, loss, the majority-class floor and the confusion matrix of `model` on the split under `dir`. */
export async function evaluateModel(model: LinearTextModel, dir: string, uri: string): Promise<Evaluation> {
  const classOf = new Map(model.classes.map((c, i) => [c, i]));
  const confusion: Record<string, Record<string, number>> = {};
  for (const t of model.classes) confusion[t] = Object.fromEntries(model.classes.map((p) => [p, 0]));
  const perLabel = new Map<string, number>();
  let examples = 0;
  let skipped = 0;
  let correct = 0;
  let loss = 0;
  for await (const ex of labelledLines(dir)) {
    const y = ex === undefined ? undefined : classOf.get(ex.label);
    if (ex === undefined || y === undefined) {
      skipped++;
      continue;
    }
    const p = probabilitiesOf(model, featurize(ex.text, model.features, model.ngrams));
    let best = 0;
    for (let c = 1; c < p.length; c++) if (p[c]! > p[best]!) best = c;
    examples++;
    if (best === y) correct++;
    loss -= Math.log(Math.max(p[y]!, 1e-15));
    confusion[ex.label]![model.classes[best]!]!++;
    perLabel.set(ex.label, (perLabel.get(ex.label) ?? 0) + 1);
  }
  if (examples === 0)
    throw new Error(`no line of ${uri} has one of the model's classes ${JSON.stringify(model.classes)}`);
  const [majority, majorityCount] = [...perLabel].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]!;
  return {
    uri,
    examples,
    skipped,
    accuracy: correct / examples,
    loss: loss / examples,
    majority_class: majority,
    majority_class_accuracy: majorityCount / examples,
    confusion,
  };
}
