/**
 * The training API as a test uses it, through real HTTP: submit a job (status
 * and body, refusals included), read one, wait for one to end. `Job` is the
 * shape the test reads of GET /v1/training/jobs/:id.
 */
import { until } from './until.ts';

export interface TrainingApi<Job extends { status: string }> {
  post(body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }>;
  get(id: string): Promise<Job>;
  /** Polls until the job is succeeded, failed or cancelled. */
  ended(id: string, timeoutMs?: number): Promise<Job>;
}

/** `producerUrl` is read at each call: a fleet started in beforeAll is not there yet when this is made. */
export function trainingApi<Job extends { status: string }>(producerUrl: () => string): TrainingApi<Job> {
  const jobs = (): string => `${producerUrl()}/v1/training/jobs`;
  const get = async (id: string): Promise<Job> => (await (await fetch(`${jobs()}/${id}`)).json()) as Job;
  return {
    async post(body) {
      const res = await fetch(jobs(), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    },
    get,
    ended: (id, timeoutMs = 60_000) =>
      until(async () => {
        const job = await get(id);
        return ['succeeded', 'failed', 'cancelled'].includes(job.status) ? job : undefined;
      }, timeoutMs),
  };
}
