/**
 * The client SDK's public surface: what other services import to submit
 * real-time requests and batches to interfleet. Nothing else in
 * producer/client is public.
 */
export {
  InterfleetClient,
  DEFAULT_TIMEOUT_MS,
  DEADLINE_MARGIN_MS,
  type InterfleetClientOptions,
  type RequestOptions,
  type ChatOptions,
  type ChatParams,
  type SummarizeOptions,
  type SentimentOptions,
  type TaskRequest,
  type OutputOf,
  type InferResult,
  type ModelInfo,
  type WaitForBatchOptions,
  type WaitForTrainingOptions,
  type TrainingJobs,
  type TrainingLogsQuery,
} from './client.ts';
export { ChatStream } from './chat-stream.ts';
export type { WaitOptions } from './wait-until-final.ts';
export type { ApiTrainingJob, ApiTrainingLogs, ApiTrainedModel } from './training-wire.ts';
export type { TrainingJobParams } from '../../common/contracts/training.ts';
export type { TrainingStatus } from '../../common/training/training-state.ts';
export type { ApiBatch, BatchCreateParams, BatchList, BatchListQuery } from '../../common/contracts/batch-api.ts';
export type { BatchStatus } from '../../common/batch/batch-state.ts';
export { InterfleetApiError, isRetryable, type ClientErrorCode } from './errors.ts';
export type { ErrorCode } from '../../common/errors.ts';
export type { Timings } from '../../common/contracts/realtime.ts';
export type {
  SchedulerExplain,
  BudgetExplanation,
  AdmissionExplanation,
  TrainingExplanation,
} from '../../common/contracts/explain.ts';
export type {
  TaskKind,
  TaskInput,
  TaskOutput,
  ChatMessage,
  ChatInput,
  ChatOutput,
  SentimentInput,
  SentimentOutput,
  SummarizeInput,
  SummarizeOutput,
  Usage,
} from '../../common/contracts/tasks.ts';
