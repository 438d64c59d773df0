/** The model backends' public surface: the seam, the registry, and the pieces bulk work reuses. */
export type { ModelBackend, RunOptions } from './backend.ts';
export { createBackend, type CreateBackendOptions } from './registry.ts';
export { createEmbeddedBackend, type EmbeddedBackendOptions } from './embedded.ts';
export { createOpenAiBackend, mapUpstreamError } from './openai-compatible.ts';
export { createEchoBackend } from './echo.ts';
export { createSimBackend, estimateTokens, simStartupDelayMs, type SimBackendOptions } from './sim.ts';
export { SimEngine, type SimEngineOptions, type SimRequest } from './sim-engine.ts';
export { LLAMA2_70B_H100, stepTimeMs, type Calibration, type StepLoad } from '../../common/sim/sim-model.ts';
export {
  planStep,
  applyPlan,
  simulate,
  type SchedulerConfig,
  type StepPlan,
  type TraceRequest,
  type TraceResult,
} from '../../common/sim/sim-scheduler.ts';
export { EmbeddedLlm, resolveModelPath, chatPrompt, type EmbeddedLlmOptions } from './embedded-llm.ts';
export { createNlp, type Nlp } from './embedded-nlp.ts';
export {
  createSentimentClassifier,
  sentimentLabel,
  NEUTRAL_BELOW,
  type SentimentClassifier,
} from './embedded-sentiment.ts';
export { createSummarizer, type Summarizer } from './embedded-summarize.ts';
