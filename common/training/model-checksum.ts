/**
 * A model's checksum: one sha256 over all its files, computed the same way by
 * the worker that writes the manifest and by the worker that loads the model
 * to serve it. It is the sha256 of the text `sha256sum` would print for the
 * files, sorted by path: one line `<file's sha256 hex>  <path>\n` each, paths
 * relative to the model's prefix with `/` separators. So `cd model &&
 * find . -type f | sed 's|^./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`
 * gives the same digest.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

export interface FileDigest {
  path: string;
  bytes: number;
  sha256: string;
}

/** The checksum of a model from its files' digests (any order). */
export function modelChecksum(files: readonly FileDigest[]): string {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const hash = createHash('sha256');
  for (const f of sorted) hash.update(`${f.sha256}  ${f.path}\n`);
  return hash.digest('hex');
}

/** Every file under `dir` with its size and sha256 (streamed), sorted by path. */
export async function digestDir(dir: string): Promise<FileDigest[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const paths = entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
  const out: FileDigest[] = [];
  for (const path of paths) {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of createReadStream(join(dir, ...path.split('/'))) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    out.push({ path, bytes, sha256: hash.digest('hex') });
  }
  return out;
}
