/**
 * The batch control queue's plan and finalize jobs, built in one place: the
 * producer adds a batch's plan job when it creates the batch, the scheduler
 * adds it again for a batch left in validating (a crash between the two) and
 * adds finalize jobs. Job ids are deterministic, so an add whose job exists
 * changes nothing: re-adding is how every writer makes sure a job is there.
 */
import type { JobsOptions } from 'bullmq';
import { controlJobId, controlJobSchema, type ControlJob } from '../contracts/batch.ts';

export interface ControlJobSpec {
  name: 'plan' | 'finalize';
  data: ControlJob;
  opts: JobsOptions;
}

/** Planning: retried briefly (the input is read again); kept a day after it ends so a re-add stays a no-op. */
export const planJob = (batchId: string): ControlJobSpec => ({
  name: 'plan',
  data: controlJobSchema.parse({ kind: 'plan', batchId }),
  opts: {
    jobId: controlJobId.plan(batchId),
    attempts: 3,
    backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: { age: 86_400 },
    removeOnFail: false,
  },
});

/**
 * Finalisation. A job that failed for good stays (removeOnFail false) so it
 * is not re-added behind an operator's back; the batch waits in finalizing
 * until someone retries it from the board.
 */
export const finalizeJob = (batchId: string): ControlJobSpec => ({
  name: 'finalize',
  data: controlJobSchema.parse({ kind: 'finalize', batchId }),
  opts: {
    jobId: controlJobId.finalize(batchId),
    attempts: 5,
    backoff: { type: 'exponential', delay: 5000 },
    removeOnComplete: true,
    removeOnFail: false,
  },
});
