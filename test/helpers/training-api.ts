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

/**
 * `producerUrl` is read at each call: a fleet started in beforeAll is not there yet when this is made.
 * `parse` checks what GET answers (e.g. the client's schema); by default it is taken as it is.
 */
export function trainingApi<Job extends { status: string }>(
  producerUrl: () => string,
  parse: (json: unknown) => Job = (json) => json as Job,
): TrainingApi<Job> {
  const jobs = (): string => `${producerUrl()}/v1/training/jobs`;
  const get = async (id: string): Promise<Job> => parse(await (await fetch(`${jobs()}/${id}`)).json());
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
