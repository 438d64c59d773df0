/**
 * Trained models loaded for serving, on first use and without a restart: a
 * request naming a model looks its name up in the registry (one Redis read),
 * and the worker loads the model from storage the first time it sees that
 * name with that checksum: every file is pulled, the checksum
 * (model-checksum.ts) is checked against the registry's, and the model is
 * parsed. At most `capacity` models are kept, least recently used out first;
 * a name re-registered to another checksum is loaded again on its next use.
 */
import type { TrainedModel } from '../common/contracts/trained-models.ts';
import { FleetError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Storage } from '../common/storage/index.ts';
import { digestDir, modelChecksum } from '../common/training/model-checksum.ts';
import type { TrainedModelRegistry } from '../common/training/trained-model-registry.ts';
import { readModelDir, type LinearTextModel } from './training/builtin/linear-text-model.ts';
import { makeRankDirs, pullPrefix, removeRankDirs } from './training/rank-files.ts';

export interface TrainedModelCacheDeps {
  registry: Pick<TrainedModelRegistry, 'getMany'>;
  storage: Storage;
  /** Most models kept loaded (≥ 1). */
  capacity: number;
  logger: Logger;
  workRoot?: string;
}

interface Entry {
  sha256: string;
  model: Promise<LinearTextModel>;
}

export class TrainedModelCache {
  /** Insertion order is recency: a hit moves its entry to the end. */
  private readonly entries = new Map<string, Entry>();
  loads = 0;

  constructor(private readonly deps: TrainedModelCacheDeps) {}

  /** The models `names` name, each a model or the error that request gets (unknown name, bad files). */
  async resolve(names: readonly string[]): Promise<Map<string, LinearTextModel | FleetError>> {
    const unique = [...new Set(names)];
    const found = await this.deps.registry.getMany(unique);
    const out = new Map<string, LinearTextModel | FleetError>();
    await Promise.all(
      unique.map(async (name) => {
        const entry = found.get(name);
        if (!entry) {
          out.set(
            name,
            new FleetError('model_not_found', `No trained model named '${name}' (GET /v1/trained-models lists them)`),
          );
          return;
        }
        try {
          out.set(name, await this.model(entry));
        } catch (err) {
          out.set(
            name,
            err instanceof FleetError ? err : new FleetError('backend_failed', String(err), { cause: err }),
          );
        }
      }),
    );
    return out;
  }

  async get(name: string): Promise<LinearTextModel> {
    const r = (await this.resolve([name])).get(name)!;
    if (r instanceof FleetError) throw r;
    return r;
  }

  private model(entry: TrainedModel): Promise<LinearTextModel> {
    const cached = this.entries.get(entry.name);
    this.entries.delete(entry.name);
    if (cached && cached.sha256 === entry.sha256) {
      this.entries.set(entry.name, cached);
      return cached.model;
    }
    const model = this.load(entry);
    const fresh = { sha256: entry.sha256, model };
    this.entries.set(entry.name, fresh);
    // A failed load is not kept: the next request tries again.
    model.catch(() => {
      if (this.entries.get(entry.name) === fresh) this.entries.delete(entry.name);
    });
    while (this.entries.size > this.deps.capacity) this.entries.delete(this.entries.keys().next().value!);
    return model;
  }

  private async load(entry: TrainedModel): Promise<LinearTextModel> {
    this.loads++;
    const dirs = await makeRankDirs(`model-${entry.name}`, this.deps.workRoot);
    try {
      if ((await pullPrefix(this.deps.storage, entry.uri, dirs.init)) === 0)
        throw new FleetError('backend_failed', `trained model '${entry.name}': nothing under ${entry.uri}`);
      const sha256 = modelChecksum(await digestDir(dirs.init));
      if (sha256 !== entry.sha256)
        throw new FleetError(
          'backend_failed',
          `trained model '${entry.name}': the files under ${entry.uri} have checksum ${sha256}, not the registered ${entry.sha256}`,
        );
      const model = await readModelDir(dirs.init).catch((err: unknown) => {
        throw new FleetError(
          'bad_request',
          `trained model '${entry.name}' is not a built-in text model: ${String(err)}`,
        );
      });
      this.deps.logger.info({ model: entry.name, sha256, uri: entry.uri }, 'trained model loaded');
      return model;
    } finally {
      await removeRankDirs(dirs).catch(() => undefined);
    }
  }
}
