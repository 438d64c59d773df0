/**
 * The files around a training program (the runner contract's storage side):
 * before it starts, its shard of the job's data and its starting checkpoint
 * are pulled from storage into a fresh working directory; after it exits 0,
 * what it wrote to its output directory is uploaded create-only.
 *
 *   <work>/data/    this rank's shard: `lines` gives rank k the k-th of N
 *                   byte ranges of every object, cut on line boundaries (a
 *                   line belongs to the range its first byte is in, so the
 *                   ranks' shards are disjoint and cover every line);
 *                   `objects` gives rank k every N-th object in URI order.
 *   <work>/init/    every object under the round's starting checkpoint.
 *   <work>/output/  uploaded to the rank's checkpoint URI on exit 0.
 *   <work>/home/, <work>/tmp/  the command's HOME and TMPDIR.
 *
 * Everything streams: memory is a chunk of a read at a time, whatever the
 * size of the data. Create-only uploads make a retried rank safe: an object
 * an earlier attempt uploaded stays as it was (principle: nothing is
 * overwritten), and the reduce reads what the first complete attempt wrote.
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { listAll, type Storage } from '../../common/storage/index.ts';

export type ShardKind = 'lines' | 'objects' | 'none';

export interface RankDirs {
  work: string;
  data: string;
  init: string;
  output: string;
}

/** Rank `rank`'s byte range [start, end) of an object of `size` bytes split `worldSize` ways. */
export function byteRange(size: number, rank: number, worldSize: number): { start: number; end: number } {
  return { start: Math.floor((size * rank) / worldSize), end: Math.floor((size * (rank + 1)) / worldSize) };
}

/** The objects the data URIs name: a URI ending in `/` is every object under it; in URI order, deduplicated. */
export async function dataObjects(
  storage: Storage,
  uris: readonly string[],
  signal?: AbortSignal,
): Promise<Array<{ uri: string; size: number }>> {
  const out = new Map<string, number>();
  for (const uri of uris) {
    if (uri.endsWith('/')) {
      for await (const item of listAll(storage, uri, { signal }))
        if (!item.uri.endsWith('/')) out.set(item.uri, item.size);
    } else {
      out.set(uri, (await storage.stat(uri, { signal })).size);
    }
  }
  return [...out].map(([uri, size]) => ({ uri, size })).sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
}

/**
 * Copies the lines of `stream` whose first byte lies in [start, end) into `file`. The stream begins
 * at start − 1 when start > 0: skipping through its first newline lands on the first line that
 * begins at or after `start` (that byte is the newline itself when a line begins exactly there).
 */
async function copyLineRange(stream: Readable, file: string, start: number, end: number): Promise<number> {
  const fh = await open(file, 'w');
  let written = 0;
  try {
    let pos = start > 0 ? start - 1 : 0; // absolute offset of the chunk's first byte
    let skipping = start > 0;
    let lineStart = start; // where the line being copied began (once not skipping)
    for await (const raw of stream) {
      const chunk = raw as Buffer;
      let from = 0;
      if (skipping) {
        const nl = chunk.indexOf(10);
        if (nl < 0) {
          pos += chunk.length;
          continue;
        }
        skipping = false;
        from = nl + 1;
        lineStart = pos + from;
      }
      if (lineStart >= end) break;
      // Copy up to the newline that ends the last line starting before `end`.
      let to = chunk.length;
      let scan = from;
      for (;;) {
        const nl = chunk.indexOf(10, scan);
        if (nl < 0) break;
        lineStart = pos + nl + 1;
        if (lineStart >= end) {
          to = nl + 1;
          break;
        }
        scan = nl + 1;
      }
      if (to > from) {
        await fh.write(chunk, from, to - from);
        written += to - from;
      }
      pos += chunk.length;
      if (lineStart >= end) break;
    }
  } finally {
    stream.destroy();
    await fh.close();
  }
  return written;
}

async function copyObject(stream: Readable, file: string): Promise<number> {
  const fh = await open(file, 'w');
  let written = 0;
  try {
    for await (const chunk of stream) {
      await fh.write(chunk as Buffer);
      written += (chunk as Buffer).length;
    }
  } finally {
    await fh.close();
  }
  return written;
}

/** The last path segment of a URI, made safe as a file name. */
const baseName = (uri: string): string => (uri.split('/').pop() || 'object').replace(/[^A-Za-z0-9._-]/g, '_');

/** Pulls rank `rank`'s shard of `uris` into `dir`; returns the bytes and files written. */
export async function pullShard(
  storage: Storage,
  data: { uris: readonly string[]; shard: ShardKind },
  rank: number,
  worldSize: number,
  dir: string,
  signal?: AbortSignal,
): Promise<{ files: number; bytes: number }> {
  if (data.shard === 'none') return { files: 0, bytes: 0 };
  const objects = await dataObjects(storage, data.uris, signal);
  if (objects.length === 0) throw new Error(`no data objects under ${data.uris.join(', ')}`);
  let files = 0;
  let bytes = 0;
  for (const [i, obj] of objects.entries()) {
    const file = join(dir, `${String(i).padStart(5, '0')}-${baseName(obj.uri)}`);
    if (data.shard === 'objects') {
      if (i % worldSize !== rank) continue;
      bytes += await copyObject(await storage.read(obj.uri, { signal }), file);
    } else {
      const { start, end } = byteRange(obj.size, rank, worldSize);
      if (end <= start) continue;
      const stream = await storage.read(obj.uri, { start: Math.max(0, start - 1), signal });
      bytes += await copyLineRange(stream, file, start, end);
    }
    files++;
  }
  return { files, bytes };
}

/** Copies every object under `prefix` into `dir` (keeping the paths below the prefix); the count. */
export async function pullPrefix(storage: Storage, prefix: string, dir: string, signal?: AbortSignal): Promise<number> {
  let n = 0;
  for await (const item of listAll(storage, prefix, { signal })) {
    const rel = item.uri.slice(prefix.length);
    if (rel === '' || rel.endsWith('/') || rel.split('/').includes('..')) continue;
    const file = join(dir, ...rel.split('/'));
    await mkdir(dirname(file), { recursive: true });
    await copyObject(await storage.read(item.uri, { signal }), file);
    n++;
  }
  return n;
}

/** Every file under `dir`, as paths relative to it with `/` separators. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

/**
 * Uploads every file under `dir` to `prefix` create-only; how many were created and how many were
 * there already. A top-level `model.json` goes last: with it in storage the files it lists are
 * there too, so a reader never takes a half-uploaded checkpoint (a rank killed mid-upload) for one.
 */
export async function pushDir(
  storage: Storage,
  dir: string,
  prefix: string,
  signal?: AbortSignal,
): Promise<{ created: number; existing: number }> {
  let created = 0;
  let existing = 0;
  const files = await filesUnder(dir);
  const ordered = [...files.filter((f) => f !== 'model.json'), ...files.filter((f) => f === 'model.json')];
  for (const rel of ordered) {
    const r = await storage.writeIfAbsent(`${prefix}${rel}`, createReadStream(join(dir, rel)), { signal });
    if (r.created) created++;
    else existing++;
  }
  return { created, existing };
}

/** A fresh working directory with empty data/, init/ and output/. */
export async function makeRankDirs(label: string, root = tmpdir()): Promise<RankDirs> {
  const work = await mkdtemp(join(root, `interfleet-${label.replace(/[^A-Za-z0-9_-]/g, '_')}-`));
  const dirs = { work, data: join(work, 'data'), init: join(work, 'init'), output: join(work, 'output') };
  // home/ and tmp/: the command's HOME and TMPDIR (run-command.ts baseEnv), never the worker's.
  const own = [join(work, 'home'), join(work, 'tmp')];
  await Promise.all([mkdir(dirs.data), mkdir(dirs.init), mkdir(dirs.output), ...own.map((d) => mkdir(d))]);
  return dirs;
}

export const removeRankDirs = (dirs: RankDirs): Promise<void> => rm(dirs.work, { recursive: true, force: true });
