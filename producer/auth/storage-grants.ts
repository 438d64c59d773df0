/**
 * The API's check of every storage URI a request names, before anything is
 * read, written or queued: real paths resolved here (the I/O), the decision
 * in common/storage/confinement.ts, a refusal as a FleetError naming the
 * field (400 malformed or `..`, 403 outside the roots or the key's grants).
 */
import { anonymousPrincipal } from '../../common/auth/principal.ts';
import { FleetError } from '../../common/errors.ts';
import {
  decideStorageAccess,
  fileRealPathsNeeded,
  type StorageAccess,
  type StoragePolicy,
  type StoragePrincipal,
} from '../../common/storage/confinement.ts';
import { realPathOf } from '../../common/storage/real-path.ts';
import { parseStorageUri } from '../../common/storage/uri.ts';

export type { StorageAccess, StoragePrincipal } from '../../common/storage/confinement.ts';

/** The operator's own URIs (config-file schedules): no key grants, the file roots still hold. */
export const operatorPrincipal: StoragePrincipal = anonymousPrincipal;

function localPath(uri: string): string | undefined {
  try {
    const parsed = parseStorageUri(uri);
    return parsed.scheme === 'file' ? parsed.path : undefined;
  } catch {
    return undefined; // the decision answers 400 for it
  }
}

/** Throws FleetError on the first access that is refused; resolves when all are allowed. */
export async function confineStorage(requests: readonly StorageAccess[], policy: StoragePolicy): Promise<void> {
  const real = new Map<string, string>();
  const unresolved = new Map<string, string>();
  await Promise.all(
    fileRealPathsNeeded(requests, policy).map(async (path) => {
      try {
        real.set(path, await realPathOf(path));
      } catch (err) {
        unresolved.set(path, (err as NodeJS.ErrnoException).code ?? String(err));
      }
    }),
  );
  for (const request of requests) {
    const decision = decideStorageAccess(request, policy, real);
    if (!decision.allowed) throw new FleetError(decision.code, decision.message, { param: request.field });
    const path = localPath(request.uri);
    const why = path === undefined ? undefined : unresolved.get(path);
    if (why !== undefined) {
      throw new FleetError('forbidden', `${request.field}: ${request.uri} cannot be resolved (${why})`, {
        param: request.field,
      });
    }
  }
}
