/**
 * The results of an ended training job, run by a worker as a `finish` job on
 * `train.<pool>` (the scheduler adds it once the job has ended): the final
 * model is read from storage, its checksum taken, it is evaluated on the
 * job's held-out split (`eval_uri`, also read from storage: weights never
 * pass through Redis), the manifest is written create-only beside the
 * checkpoints, the model is registered under `model_name`, and the manifest
 * is recorded in the job's state. Safe to run twice: a manifest already in
 * storage is the one used (the first complete run wins).
 */
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import type { Artifact, Evaluation, TrainingManifest } from '../../common/contracts/trained-models.ts';
import { trainingManifestSchema } from '../../common/contracts/trained-models.ts';
import type { FinishJob } from '../../common/contracts/training.ts';
import type { Logger } from '../../common/logger.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import { digestDir, modelChecksum } from '../../common/training/model-checksum.ts';
import type { TrainedModelRegistry } from '../../common/training/trained-model-registry.ts';
import {
  artifactUriFor,
  buildManifest,
  manifestUriFor,
  type TrainingResultsStore,
} from '../../common/training/training-results.ts';
import { isFinal, type TrainingStore } from '../../common/training/training-state.ts';
import { readModelDir, type LinearTextModel } from './builtin/linear-text-model.ts';
import { evaluateModel } from './evaluate-model.ts';
import { makeRankDirs, pullPrefix, pullShard, removeRankDirs } from './rank-files.ts';

export interface FinishDeps {
  storage: Storage;
  store: Pick<TrainingStore, 'get' | 'ranks'>;
  results: Pick<TrainingResultsStore, 'get' | 'setManifest'>;
  registry: Pick<TrainedModelRegistry, 'register'>;
  logger: Logger;
  now: () => number;
  workRoot?: string;
}

/** A reason the job cannot be finished by any retry. */
export class FinishError extends Error {}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The manifest already written for this job, if any (a run that stopped before recording it). */
async function writtenManifest(
  storage: Storage,
  uri: string,
  signal: AbortSignal,
): Promise<TrainingManifest | undefined> {
  try {
    return trainingManifestSchema.parse(JSON.parse(await text(await storage.read(uri, { signal }))));
  } catch (err) {
    if (isStorageError(err) && err.code === 'not_found') return undefined;
    throw err;
  }
}

export async function runFinishJob(deps: FinishDeps, job: FinishJob, signal: AbortSignal): Promise<TrainingManifest> {
  const { storage, logger } = deps;
  const state = await deps.store.get(job.pool, job.jobId);
  if (!state) throw new FinishError(`training job ${job.jobId} has no state in pool ${job.pool}`);
  if (!isFinal(state.status)) throw new FinishError(`training job ${job.jobId} is ${state.status}, not ended`);
  const recorded = (await deps.results.get(job.pool, job.jobId)).manifest;
  if (recorded) return recorded;
  const { spec } = state;
  const manifestUri = manifestUriFor(spec);
  const log = logger.child({ trainingJob: spec.id, finish: true });

  let manifest = await writtenManifest(storage, manifestUri, signal);
  if (!manifest) {
    const dirs = await makeRankDirs(`${spec.id}-finish`, deps.workRoot);
    try {
      let artifact: Artifact | null = null;
      let model: LinearTextModel | undefined;
      let evaluation: Evaluation | null = null;
      let evaluationError: string | null = null;
      if (state.status === 'succeeded') {
        const uri = artifactUriFor(spec, state.round, state.restarts);
        const dir = join(dirs.init, 'model');
        await mkdir(dir);
        if ((await pullPrefix(storage, uri, dir, signal)) > 0) {
          const files = await digestDir(dir);
          model = await readModelDir(dir).catch((err: unknown) => {
            evaluationError = `the final model is not a built-in text model: ${errText(err)}`;
            return undefined;
          });
          artifact = { uri, sha256: modelChecksum(files), files, classes: model?.classes ?? null };
        } else {
          evaluationError = `the final model is missing: nothing under ${uri}`;
        }
        const evalUri = spec.evalUri ?? null;
        if (evalUri !== null && model) {
          try {
            await pullShard(storage, { uris: [evalUri], shard: 'objects' }, 0, 1, dirs.data, signal);
            evaluation = await evaluateModel(model, dirs.data, evalUri);
          } catch (err) {
            evaluationError = `evaluation on ${evalUri} failed: ${errText(err)}`;
          }
        }
        if (evalUri === null) evaluationError = null;
      }
      const modelName = state.status === 'succeeded' && artifact !== null ? (spec.modelName ?? null) : null;
      const built = buildManifest({
        state,
        ranks: await deps.store.ranks(spec.pool, spec.id),
        artifact,
        evaluation,
        evaluationError,
        modelName,
        now: deps.now(),
      });
      const body = Buffer.from(`${JSON.stringify(built, null, 2)}\n`);
      const { created } = await storage.writeIfAbsent(manifestUri, body, { signal, contentType: 'application/json' });
      manifest = created ? built : ((await writtenManifest(storage, manifestUri, signal)) ?? built);
    } finally {
      await removeRankDirs(dirs).catch((err: unknown) =>
        log.warn({ err, dir: dirs.work }, 'finish directory not removed'),
      );
    }
  }
  if (manifest.model_name !== null && manifest.artifact !== null) {
    const ev = manifest.evaluation;
    await deps.registry.register({
      name: manifest.model_name,
      uri: manifest.artifact.uri,
      sha256: manifest.artifact.sha256,
      job_id: spec.id,
      pool: spec.pool,
      classes: manifest.artifact.classes,
      created_at: manifest.written_at,
      evaluation: ev && {
        uri: ev.uri,
        accuracy: ev.accuracy,
        examples: ev.examples,
        majority_class_accuracy: ev.majority_class_accuracy,
      },
    });
  }
  await deps.results.setManifest(spec.pool, spec.id, manifest);
  log.info(
    {
      status: manifest.status,
      sha256: manifest.artifact?.sha256,
      accuracy: manifest.evaluation?.accuracy,
      model: manifest.model_name,
    },
    'training results written',
  );
  return manifest;
}
