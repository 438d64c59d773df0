/**
 * The typed client other services use to submit real-time requests to the
 * producer's native API (`/v1/infer`): one method per task, typed per task,
 * responses parsed with the shared contracts, failures as InterfleetApiError.
 * Batches go through the Batch API (`/v1/batches`): create, get, list (a
 * page, or every page as an async iterator), cancel, and wait for the end.
 * Training jobs (`/v1/training/jobs`) under `client.training`: create,
 * retrieve, cancel, a round's rank logs, and wait for the end.
 *
 * Deadlines: every request carries `timeout_ms` to the producer, which
 * answers 504 when it passes; the client also gives up on its own a little
 * later (network loss, a stuck connection), combined with the caller's
 * signal. Retries are never automatic: see `isRetryable` and `retryAfterMs`.
 */
import type { z } from 'zod';
import type {
  taskInputSchema,
  ChatMessage,
  ChatOutput,
  SentimentOutput,
  SummarizeOutput,
  TaskKind,
  TaskOutput,
} from '../../common/contracts/tasks.ts';
import { schedulerExplainSchema, type SchedulerExplain } from '../../common/contracts/explain.ts';
import type { Timings } from '../../common/contracts/realtime.ts';
import {
  apiBatchSchema,
  batchListSchema,
  type ApiBatch,
  type BatchCreateParams,
  type BatchList,
  type BatchListQuery,
} from '../../common/contracts/batch-api.ts';
import type { TrainingJobParams } from '../../common/contracts/training.ts';
import { ChatStream } from './chat-stream.ts';
import { errorFromFailure, errorFromResponse, InterfleetApiError } from './errors.ts';
import {
  apiTrainingJobSchema,
  apiTrainingLogsSchema,
  type ApiTrainingJob,
  type ApiTrainingLogs,
  apiTrainedModelListSchema,
  apiTrainedModelSchema,
  type ApiTrainedModel,
} from './training-wire.ts';
import { pollUntilFinal, type WaitOptions } from './wait-until-final.ts';
import { isTerminal } from '../../common/batch/batch-state.ts';
import { isFinal } from '../../common/training/training-state.ts';
import { inferResponseSchema, modelListSchema } from './wire.ts';

/** Default deadline, the producer's own default. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** How much longer than the server's deadline the client waits, so that the server's 504 normally wins. */
export const DEADLINE_MARGIN_MS = 1_000;

export interface InterfleetClientOptions {
  /** Where the producer listens, e.g. http://interfleet-producer:8080. */
  baseUrl: string;
  /** Deadline of each request unless the call sets one (ms). */
  timeoutMs?: number;
  /** A fetch implementation (tests, proxies); the global one by default. */
  fetch?: typeof fetch;
  /** Headers sent with every request (tracing, a proxy's own auth). */
  headers?: Record<string, string>;
  /**
   * The API key, sent as `Authorization: Bearer <key>`; by default env INTERFLEET_API_KEY (as the
   * openai client reads OPENAI_API_KEY). Not needed when the producer runs with auth off.
   */
  apiKey?: string;
}

export interface RequestOptions {
  /** This request's deadline (ms), sent to the producer as `timeout_ms`. */
  timeoutMs?: number;
  /** Cancels the request; the producer then withdraws the job. */
  signal?: AbortSignal;
}

/** A task input as a caller writes it: fields with defaults may be left out. */
export type TaskRequest = z.input<typeof taskInputSchema>;
/** The output type that belongs to a task input (sentiment in, SentimentOutput out). */
export type OutputOf<I extends { task: TaskKind }> = Extract<TaskOutput, { task: I['task'] }>;

export interface InferResult<O extends TaskOutput = TaskOutput> {
  /** The request id the producer gave (also its x-request-id). */
  id: string;
  model: string;
  output: O;
  timings: Timings;
}

/** Generation parameters of a chat request. */
export interface ChatParams {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop?: string[];
  seed?: number;
}
export type ChatOptions = RequestOptions & ChatParams;
export type SummarizeOptions = RequestOptions & { maxSentences?: number };
/** `trainedModel`: a registered trained model answers instead of the pool's own classifier. */
export type SentimentOptions = RequestOptions & { trainedModel?: string };

export interface ModelInfo {
  /** The pool name, used as `model` in requests. */
  id: string;
  backend: string;
  tasks: string[];
  /** Live workers, or null when the producer could not tell. */
  workers: number | null;
}

/** How `waitForBatch` polls; see WaitOptions. */
export type WaitForBatchOptions = WaitOptions<ApiBatch>;
/** How `client.training.wait` polls; see WaitOptions. */
export type WaitForTrainingOptions = WaitOptions<ApiTrainingJob>;

/** Which logs `client.training.logs` reads; by default every rank of the round running (or the last that ran). */
export interface TrainingLogsQuery {
  round?: number;
  /** One rank (0 to workers - 1); default every rank. */
  rank?: number;
  /** The last lines of each rank (1 to 10000); default 100. */
  tail?: number;
}

/** `client.training`: training gangs through `/v1/training/jobs`. An unknown id rejects with status 404. */
export interface TrainingJobs {
  /** Submits a job (the API's snake_case fields); it starts `queued` for round 1. */
  create(body: TrainingJobParams, opts?: RequestOptions): Promise<ApiTrainingJob>;
  /** The job: its status, round and every rank's record. */
  retrieve(jobId: string, opts?: RequestOptions): Promise<ApiTrainingJob>;
  /** Cancels a queued or running job; one already ended rejects with 409. */
  cancel(jobId: string, opts?: RequestOptions): Promise<ApiTrainingJob>;
  /** The last log lines (its metric lines) of each rank of one round. */
  logs(jobId: string, query?: TrainingLogsQuery, opts?: RequestOptions): Promise<ApiTrainingLogs>;
  /**
   * Polls until the job is succeeded, failed or cancelled, and returns it
   * then; `onProgress` sees every poll. Outages are waited out.
   */
  wait(jobId: string, opts?: WaitForTrainingOptions & Pick<RequestOptions, 'timeoutMs'>): Promise<ApiTrainingJob>;
}

/** One request in flight: its combined signal, and how to name a failure. */
interface Call {
  signal: AbortSignal;
  fail: (err: unknown) => InterfleetApiError;
}

export class InterfleetClient {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;

  constructor(opts: InterfleetClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = checkTimeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.fetchImpl = opts.fetch ?? globalThis.fetch;
    const apiKey = opts.apiKey ?? process.env.INTERFLEET_API_KEY;
    this.headers = { ...(apiKey && { authorization: `Bearer ${apiKey}` }), ...opts.headers };
  }

  /** Training jobs: create, retrieve, cancel, logs, wait. */
  readonly training: TrainingJobs = {
    create: async (body, opts = {}) => {
      const call = this.begin('create training job', checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
      return this.readJson(call, await this.post(call, '/v1/training/jobs', body), apiTrainingJobSchema);
    },
    retrieve: async (jobId, opts = {}) => {
      const call = this.begin(`get training job ${jobId}`, checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
      const res = await this.send(call, `/v1/training/jobs/${encodeURIComponent(jobId)}`, { method: 'GET' });
      return this.readJson(call, res, apiTrainingJobSchema);
    },
    cancel: async (jobId, opts = {}) => {
      const timeoutMs = checkTimeout(opts.timeoutMs ?? this.timeoutMs);
      const call = this.begin(`cancel training job ${jobId}`, timeoutMs, opts.signal);
      const res = await this.send(call, `/v1/training/jobs/${encodeURIComponent(jobId)}/cancel`, { method: 'POST' });
      return this.readJson(call, res, apiTrainingJobSchema);
    },
    logs: async (jobId, query = {}, opts = {}) => {
      const timeoutMs = checkTimeout(opts.timeoutMs ?? this.timeoutMs);
      const call = this.begin(`get logs of training job ${jobId}`, timeoutMs, opts.signal);
      const search = new URLSearchParams();
      for (const key of ['round', 'rank', 'tail'] as const) {
        if (query[key] !== undefined) search.set(key, String(query[key]));
      }
      const qs = search.size > 0 ? `?${search.toString()}` : '';
      const res = await this.send(call, `/v1/training/jobs/${encodeURIComponent(jobId)}/logs${qs}`, { method: 'GET' });
      return this.readJson(call, res, apiTrainingLogsSchema);
    },
    wait: (jobId, opts = {}) => {
      const { timeoutMs, ...wait } = opts;
      const get = (signal: AbortSignal | undefined): Promise<ApiTrainingJob> =>
        this.training.retrieve(jobId, { timeoutMs, signal });
      return pollUntilFinal({ what: `training job ${jobId}`, get, isFinal: (job) => isFinal(job.status) }, wait);
    },
  };

  /** Runs one task on a pool; the output type follows the input's task. */
  async infer<I extends TaskRequest>(
    model: string,
    input: I,
    opts: RequestOptions = {},
  ): Promise<InferResult<OutputOf<I>>> {
    const timeoutMs = checkTimeout(opts.timeoutMs ?? this.timeoutMs);
    const call = this.begin(`infer ${input.task} on ${model}`, timeoutMs, opts.signal);
    const res = await this.post(call, '/v1/infer', { model, input, timeout_ms: timeoutMs });
    const body = await this.readJson(call, res, inferResponseSchema);
    if (body.output.task !== input.task) {
      throw new InterfleetApiError('internal', `asked for ${input.task}, the producer answered ${body.output.task}`, {
        status: res.status,
        requestId: body.id,
      });
    }
    return { ...body, output: body.output as OutputOf<I> };
  }

  async sentiment(model: string, text: string, opts: SentimentOptions = {}): Promise<SentimentOutput> {
    const { trainedModel, ...request } = opts;
    return (
      await this.infer(
        model,
        { task: 'sentiment', text, ...(trainedModel !== undefined && { model: trainedModel }) },
        request,
      )
    ).output;
  }

  /** Trained models registered by finished jobs (`model_name`); an unknown name rejects with status 404. */
  readonly trainedModels = {
    list: async (opts: RequestOptions = {}): Promise<ApiTrainedModel[]> => {
      const call = this.begin('list trained models', checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
      const res = await this.send(call, '/v1/trained-models', { method: 'GET' });
      return (await this.readJson(call, res, apiTrainedModelListSchema)).data;
    },
    retrieve: async (name: string, opts: RequestOptions = {}): Promise<ApiTrainedModel> => {
      const call = this.begin(`get trained model ${name}`, checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
      const res = await this.send(call, `/v1/trained-models/${encodeURIComponent(name)}`, { method: 'GET' });
      return this.readJson(call, res, apiTrainedModelSchema);
    },
  };

  async summarize(model: string, text: string, opts: SummarizeOptions = {}): Promise<SummarizeOutput> {
    const { maxSentences, ...request } = opts;
    return (
      await this.infer(model, { task: 'summarize', text, ...(maxSentences !== undefined && { maxSentences }) }, request)
    ).output;
  }

  async chat(model: string, messages: ChatMessage[], opts: ChatOptions = {}): Promise<ChatOutput> {
    const { timeoutMs, signal, ...params } = opts;
    return (await this.infer(model, { task: 'chat', messages, ...params }, { timeoutMs, signal })).output;
  }

  /**
   * Streams a chat: iterate for the text deltas as they are generated, await
   * `.result` for the final output. The request starts at once.
   */
  chatStream(model: string, messages: ChatMessage[], opts: ChatOptions = {}): ChatStream {
    const { timeoutMs: ms, signal, ...params } = opts;
    const timeoutMs = checkTimeout(ms ?? this.timeoutMs);
    const local = new AbortController();
    const cancel = signal ? AbortSignal.any([signal, local.signal]) : local.signal;
    const call = this.begin(`chat stream on ${model}`, timeoutMs, cancel);
    const body = { model, input: { task: 'chat', messages, ...params }, timeout_ms: timeoutMs, stream: true };
    const response = this.post(call, '/v1/infer', body, 'text/event-stream');
    return new ChatStream({ response, fail: call.fail, cancel: () => local.abort() });
  }

  /** The pools this producer serves, with their tasks and live worker counts. */
  async models(opts: RequestOptions = {}): Promise<ModelInfo[]> {
    const call = this.begin('list models', checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
    const res = await this.send(call, '/v1/models', { method: 'GET' });
    const body = await this.readJson(call, res, modelListSchema);
    return body.data.map(({ id, backend, tasks, workers }) => ({ id, backend, tasks, workers }));
  }

  /** What the scheduler last decided for each pool (or `pool`) and why: bulk budget, batch and training admission. */
  async explainScheduler(pool?: string, opts: RequestOptions = {}): Promise<SchedulerExplain> {
    const call = this.begin('explain scheduler', checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
    const qs = pool === undefined ? '' : `?${new URLSearchParams({ pool }).toString()}`;
    const res = await this.send(call, `/v1/scheduler/explain${qs}`, { method: 'GET' });
    return this.readJson(call, res, schedulerExplainSchema);
  }

  /** Submits a batch (OpenAI's Batch API); it starts `validating` and is planned asynchronously. */
  async createBatch(params: BatchCreateParams, opts: RequestOptions = {}): Promise<ApiBatch> {
    const call = this.begin('create batch', checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
    return this.readJson(call, await this.post(call, '/v1/batches', params), apiBatchSchema);
  }

  /** One batch; an unknown id rejects with status 404. */
  async getBatch(batchId: string, opts: RequestOptions = {}): Promise<ApiBatch> {
    const call = this.begin(`get batch ${batchId}`, checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
    const res = await this.send(call, `/v1/batches/${encodeURIComponent(batchId)}`, { method: 'GET' });
    return this.readJson(call, res, apiBatchSchema);
  }

  /** One page of batches, newest first; pass the page's `last_id` as `after` for the next. */
  async listBatches(query: BatchListQuery = {}, opts: RequestOptions = {}): Promise<BatchList> {
    const call = this.begin('list batches', checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
    const search = new URLSearchParams();
    if (query.limit !== undefined) search.set('limit', String(query.limit));
    if (query.after !== undefined) search.set('after', query.after);
    const qs = search.size > 0 ? `?${search.toString()}` : '';
    return this.readJson(call, await this.send(call, `/v1/batches${qs}`, { method: 'GET' }), batchListSchema);
  }

  /** Every page of batches, newest first, fetched as the loop asks for them. */
  async *batchPages(query: BatchListQuery = {}, opts: RequestOptions = {}): AsyncGenerator<BatchList> {
    let after = query.after;
    for (;;) {
      const page = await this.listBatches({ ...query, after }, opts);
      yield page;
      if (!page.has_more || page.last_id === null) return;
      after = page.last_id;
    }
  }

  /** Stops a batch: it moves to `cancelling`, then `cancelled` once what ran is delivered. */
  async cancelBatch(batchId: string, opts: RequestOptions = {}): Promise<ApiBatch> {
    const call = this.begin(`cancel batch ${batchId}`, checkTimeout(opts.timeoutMs ?? this.timeoutMs), opts.signal);
    const res = await this.send(call, `/v1/batches/${encodeURIComponent(batchId)}/cancel`, { method: 'POST' });
    return this.readJson(call, res, apiBatchSchema);
  }

  /**
   * Polls until the batch is completed, failed, expired or cancelled, and
   * returns it then; `onProgress` sees every poll. Outages are waited out.
   */
  waitForBatch(batchId: string, opts: WaitForBatchOptions & Pick<RequestOptions, 'timeoutMs'> = {}): Promise<ApiBatch> {
    const { timeoutMs, ...wait } = opts;
    const get = (signal: AbortSignal | undefined): Promise<ApiBatch> => this.getBatch(batchId, { timeoutMs, signal });
    return pollUntilFinal({ what: `batch ${batchId}`, get, isFinal: (batch) => isTerminal(batch.status) }, wait);
  }

  private begin(what: string, timeoutMs: number, cancelSignal: AbortSignal | undefined): Call {
    const deadlineMs = timeoutMs + DEADLINE_MARGIN_MS;
    const deadline = AbortSignal.timeout(deadlineMs);
    return {
      signal: cancelSignal ? AbortSignal.any([cancelSignal, deadline]) : deadline,
      fail: (err) => errorFromFailure(err, { cancelSignal, deadlineSignal: deadline, deadlineMs, what }),
    };
  }

  private post(call: Call, path: string, body: unknown, accept = 'application/json'): Promise<Response> {
    return this.send(call, path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept },
      body: JSON.stringify(body),
    });
  }

  /** Sends and resolves to a 2xx response; anything else is an InterfleetApiError. */
  private async send(call: Call, path: string, init: RequestInit): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.baseUrl}${path}`, {
        ...init,
        headers: { ...this.headers, ...(init.headers as Record<string, string> | undefined) },
        signal: call.signal,
      });
    } catch (err) {
      throw call.fail(err);
    }
    if (!res.ok) throw await errorFromResponse(res);
    return res;
  }

  private async readJson<T>(call: Call, res: Response, schema: z.ZodType<T>): Promise<T> {
    const requestId = res.headers.get('x-request-id') ?? undefined;
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw call.fail(err);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new InterfleetApiError('internal', 'the producer answered with a body that is not JSON', {
        status: res.status,
        requestId,
        cause: err,
      });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new InterfleetApiError(
        'internal',
        `the producer's answer does not match the contract: ${parsed.error.message}`,
        {
          status: res.status,
          requestId,
          cause: parsed.error,
        },
      );
    }
    return parsed.data;
  }
}

function checkTimeout(ms: number): number {
  if (!Number.isInteger(ms) || ms < 1) throw new RangeError(`timeoutMs must be a positive integer, got ${ms}`);
  return ms;
}
