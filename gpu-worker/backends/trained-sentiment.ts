/**
 * Serves trained models for the `sentiment` task in front of any backend: a
 * sentiment input naming a `model` is answered by that trained model
 * (trained-model-cache.ts loads it), every other input goes to the pool's
 * backend unchanged (the lexicon stays the default). The model's classes
 * must be sentiment labels (positive, negative, neutral): its most probable
 * class is the label, and the score is P(positive) − P(negative).
 */
import {
  sentimentOutputSchema,
  type SentimentOutput,
  type TaskInput,
  type TaskOutput,
} from '../../common/contracts/tasks.ts';
import { FleetError } from '../../common/errors.ts';
import { predict, type LinearTextModel } from '../training/builtin/linear-text-model.ts';
import type { TrainedModelCache } from '../trained-model-cache.ts';
import type { ModelBackend, RunManyOptions, RunOptions } from './backend.ts';

const sentimentLabels = new Set(sentimentOutputSchema.shape.label.options as readonly string[]);

/** The trained model's answer to one text. */
export function classifyWith(name: string, model: LinearTextModel, text: string): SentimentOutput {
  const odd = model.classes.filter((c) => !sentimentLabels.has(c));
  if (odd.length > 0)
    throw new FleetError(
      'bad_request',
      `trained model '${name}' has classes ${JSON.stringify(model.classes)}; the sentiment task needs positive, negative or neutral`,
      { param: 'input.model' },
    );
  const p = predict(model, text);
  const score = (p.probabilities.positive ?? 0) - (p.probabilities.negative ?? 0);
  return { task: 'sentiment', label: p.label as SentimentOutput['label'], score: Math.max(-1, Math.min(1, score)) };
}

const named = (input: TaskInput): input is Extract<TaskInput, { task: 'sentiment' }> & { model: string } =>
  input.task === 'sentiment' && input.model !== undefined;

export function withTrainedModels(backend: ModelBackend, cache: TrainedModelCache): ModelBackend {
  const wrapped: ModelBackend = {
    kind: backend.kind,
    tasks: backend.tasks,
    async run(input: TaskInput, opts: RunOptions): Promise<TaskOutput> {
      if (!named(input)) return backend.run(input, opts);
      if (opts.signal.aborted) throw opts.signal.reason;
      return classifyWith(input.model, await cache.get(input.model), input.text);
    },
    close: () => backend.close(),
  };
  const runMany = backend.runMany?.bind(backend);
  if (runMany) {
    wrapped.runMany = async (
      inputs: readonly TaskInput[],
      opts: RunManyOptions,
    ): Promise<Array<TaskOutput | Error>> => {
      const mine = inputs.flatMap((input, i) => (named(input) ? [{ input, i }] : []));
      if (mine.length === 0) return runMany(inputs, opts);
      const rest = inputs.flatMap((input, i) => (named(input) ? [] : [{ input, i }]));
      const results = new Array<TaskOutput | Error>(inputs.length);
      const models = await cache.resolve(mine.map((m) => m.input.model));
      for (const { input, i } of mine) {
        const model = models.get(input.model)!;
        try {
          if (model instanceof Error) throw model;
          results[i] = classifyWith(input.model, model, input.text);
        } catch (err) {
          results[i] = err instanceof Error ? err : new Error(String(err));
        }
      }
      if (rest.length > 0) {
        const out = await runMany(
          rest.map((r) => r.input),
          opts,
        );
        rest.forEach((r, k) => (results[r.i] = out[k]!));
      }
      if (opts.signal.aborted) throw opts.signal.reason;
      return results;
    };
  }
  return wrapped;
}
