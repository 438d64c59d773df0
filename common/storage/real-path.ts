/**
 * Real paths for the confinement decision (confinement.ts): where a local
 * path actually leads once every symbolic link is followed, including a path
 * that does not exist yet (an output about to be written): its nearest
 * existing ancestor's real path, with the rest appended, and a dangling link
 * followed to where it points (a write through it would land there).
 */
import { readlink, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';

/** Linux's own limit on links followed in one lookup (ELOOP). */
const maxLinks = 40;

async function resolve(path: string, links: { left: number }): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
  }
  const target = await readlink(path).catch(() => undefined);
  if (target !== undefined) {
    if (--links.left < 0) throw Object.assign(new Error(`${path}: too many symbolic links`), { code: 'ELOOP' });
    // Not normalised: `..` in a link's target is taken from the real folder, as the kernel does.
    return resolve(isAbsolute(target) ? target : `${dirname(path)}/${target}`, links);
  }
  const parent = dirname(path);
  if (parent === path) return path;
  return join(await resolve(parent, links), basename(path));
}

/** `path` with every symbolic link resolved; a trailing `/` (a folder or prefix) is kept. */
export async function realPathOf(path: string): Promise<string> {
  const real = await resolve(path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path, { left: maxLinks });
  return path.endsWith('/') && !real.endsWith('/') ? `${real}/` : real;
}
