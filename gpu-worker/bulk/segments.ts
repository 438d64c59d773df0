/**
 * A chunk that yields keeps what it finished as a segment (chunk-runner.ts
 * says how and why). These pure functions move a chunk job along its
 * segments: where it was planned to start, where it resumes, and the names
 * its last part takes. The batch's record (BatchStore.chunkSegments) is the
 * one that counts; the job's own `segments` are a copy that can only lag it.
 */
import { segmentPartUris, type Chunk, type ChunkJob, type ChunkSegment } from '../../common/contracts/batch.ts';

/** The planned chunk's start and non-blank line count, whatever segments the job carries. */
export function plannedRange(job: ChunkJob): Pick<Chunk, 'start' | 'lines'> {
  const segs = job.segments ?? [];
  const done = segs.reduce((n, s) => n + s.lines, 0);
  return { start: segs[0]?.start ?? job.chunk.start, lines: job.chunk.lines + done };
}

/**
 * The job with `segments` done: its chunk starts where the last one ends.
 * `segments` must be a whole record that extends the job's own (the batch's
 * record, read before the run).
 */
export function resumeJob(job: ChunkJob, segments: readonly ChunkSegment[]): ChunkJob {
  const known = job.segments ?? [];
  if (segments.length <= known.length) return job;
  const planned = plannedRange(job);
  const last = segments[segments.length - 1]!;
  const done = segments.reduce((n, s) => n + s.lines, 0);
  return {
    ...job,
    chunk: { ...job.chunk, start: last.end, firstLine: last.nextLine, lines: Math.max(0, planned.lines - done) },
    segments: [...segments],
  };
}

/** The job after one more segment, `segment`, of its chunk. */
export function afterSegment(job: ChunkJob, segment: ChunkSegment): ChunkJob {
  return resumeJob(job, [...(job.segments ?? []), segment]);
}

/** Where a run of `job` that finishes writes: the chunk's parts, or for a resumed chunk its last range's. */
export function lastPartUris(job: ChunkJob): { outputPart: string; errorPart: string } {
  if ((job.segments ?? []).length === 0) return { outputPart: job.outputPart, errorPart: job.errorPart };
  return segmentPartUris(job, job.chunk.start, job.chunk.end);
}

/** Line counts carried by a job's segments. */
export function segmentTotals(segments: readonly ChunkSegment[]): { completed: number; failed: number } {
  let completed = 0;
  let failed = 0;
  for (const s of segments) {
    completed += s.completed;
    failed += s.failed;
  }
  return { completed, failed };
}
