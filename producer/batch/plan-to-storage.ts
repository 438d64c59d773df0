/**
 * Plans a batch straight into storage (common/batch/plan-file.ts): its chunks
 * go out in pieces as they are cut, each piece a create-only object published
 * as soon as it is written (`onPublished`), so chunks can be admitted while
 * the rest of the input is still being read; when planning ends, the pieces
 * are concatenated into the plan object.
 */
import type { Chunk } from '../../common/contracts/batch.ts';
import { StorageError, type Storage } from '../../common/storage/index.ts';
import { pieceStart, planLine, planPieceUri } from '../../common/batch/plan-file.ts';
import { planBatch, type PlanOptions, type PlanResult, type PlanStorage } from './planner.ts';

export interface PlanToStorageOptions extends PlanOptions {
  /** Folder (ending in `/`) for the plan's pieces; default `<planUri>.pieces/`. */
  piecesPrefix?: string;
  /**
   * Called after each piece is written, in order, with the number of chunks
   * readable in the pieces so far; awaited before the next piece is published.
   * A throw stops planning with that error.
   */
  onPublished?: (published: number) => Promise<void> | void;
}

export type PlanToStorageStorage = PlanStorage & Pick<Storage, 'writeIfAbsent' | 'concat'>;

/**
 * Plans `inputUri` into pieces and then into the plan object `planUri`
 * (memory: the piece being filled and the one being written). A re-run finds
 * its pieces there and keeps them, after checking each holds the very bytes it
 * cut (else the input changed between runs: StorageError precondition_failed,
 * about the input). A planning failure publishes no further piece and never
 * the plan object; pieces already published stay (they are what was admitted).
 */
export async function planToStorage(
  storage: PlanToStorageStorage,
  inputUri: string,
  planUri: string,
  opts: PlanToStorageOptions,
): Promise<PlanResult & { created: boolean }> {
  const piecesPrefix = opts.piecesPrefix ?? `${planUri}.pieces/`;
  const { signal } = opts;
  let piece = 0;
  let lines: string[] = [];
  let created = false;
  let writing: Promise<void> = Promise.resolve();

  const publish = async (no: number, body: Buffer, published: number): Promise<void> => {
    const uri = planPieceUri(piecesPrefix, no);
    const written = await storage.writeIfAbsent(uri, body, { contentType: 'application/jsonl', signal });
    if (written.created) created = true;
    else await checkSame(storage, uri, body, inputUri, signal);
    await opts.onPublished?.(published);
  };
  /** Starts writing the filled piece once the previous one is published (one write in flight). */
  const flush = async (published: number): Promise<void> => {
    await writing;
    const body = Buffer.from(lines.join(''));
    const no = piece;
    lines = [];
    piece++;
    writing = publish(no, body, published);
    // Seen by the next flush or the end; until then a failure must not go unhandled.
    writing.catch(() => undefined);
  };

  let result: PlanResult;
  try {
    result = await planBatch(storage, inputUri, opts, async (chunk: Chunk) => {
      lines.push(planLine(chunk));
      if (chunk.index === pieceStart(piece + 1) - 1) await flush(chunk.index + 1);
    });
    if (lines.length > 0) await flush(result.chunks);
    await writing;
  } catch (err) {
    await writing.catch(() => undefined); // nothing left running behind the failure
    throw err;
  }
  // `piece` counts the pieces flushed: one per piece the chunks reach (flush is the only writer).
  const sources = Array.from({ length: piece }, (_, p) => planPieceUri(piecesPrefix, p));
  await storage.concat(planUri, sources, { contentType: 'application/jsonl', signal });
  return { ...result, created };
}

/** An existing piece must hold the bytes this run cut: the same input plans the same chunks. */
async function checkSame(
  storage: Pick<Storage, 'read'>,
  uri: string,
  body: Buffer,
  inputUri: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const pieces: Buffer[] = [];
  for await (const piece of (await storage.read(uri, { signal })) as AsyncIterable<Buffer>) pieces.push(piece);
  if (!Buffer.concat(pieces).equals(body)) {
    throw new StorageError(
      'precondition_failed',
      `the plan piece ${uri} from an earlier planning run differs from this one's: ${inputUri} changed in between`,
      { uri: inputUri },
    );
  }
}
