/**
 * The sim backend's cost model: how long one engine step (one forward pass of
 * a continuous-batching server) takes for the tokens in its batch.
 *
 * A step is bound either by memory (every step streams the weights, and each
 * decoding sequence its KV cache: grows slowly with batch size) or by compute
 * (prefill: ~2·params FLOPs per token, linear in the batch's tokens), so it
 * costs a fixed overhead plus the larger of the two, as in the roofline model
 * (Williams et al., CACM 2009):
 *
 *   stepMs = overheadMs + max(weightsMs + decodeMsPerSeq · decodeSeqs,
 *                             prefillMsPerToken · (prefillTokens + decodeSeqs))
 *
 * Calibration: Llama-2-70B (fp16) on H100-80GB, from the profiling data the
 * Splitwise authors published with their simulator (Patel et al., "Splitwise:
 * Efficient Generative LLM Inference Using Phase Splitting", ISCA 2024;
 * github.com/Mutinifni/splitwise-sim, data/perf_model.csv, rows
 * `llama2-70b,h100-80gb`, whose tensor_parallel column reads 2). Each
 * configuration was run 5 times; we take medians (ms):
 *
 *   decode step (token_time), prompt 512, batch B:
 *     B=1 37.0 · 2 37.4 · 4 40.0 · 8 40.4 · 16 42.0 · 32 52.3
 *   prefill (prompt_time), batch 1, prompt P:
 *     P=128 48.3 · 256 51.8 · 512 83.8 · 1024 158.0 · 2048 310.3 · 4096 642.7 · 8192 1339.8
 *   prefill, B prompts of 512 tokens (B·512 tokens):
 *     1024 155.8 · 2048 299.8 · 4096 606.0 · 8192 1192.0 · 16384 2397.8
 *
 * Least squares: decode = 36.67 + 0.462·B; prefill = 11.6 + 0.1456·tokens
 * (points of 512 tokens and more). Hence overheadMs 11.6, weightsMs
 * 36.67 − 11.6 = 25.1. Against the medians the model is within ±6% for
 * decode batches 1–32 and prefills of 256–16384 tokens; it under-estimates a
 * 128-token prefill by 24% (fixed costs of tiny batches) and a single
 * 8192-token prompt by 10% (attention's quadratic term is not modelled; KV
 * length barely moves decode there: 37.0–37.8 ms for prompts of 128–8192).
 * The batch-64 rows are left out: their prefill of 64×512 tokens reads
 * 360 ms, 7× below the 32-prompt row, so they are not the same experiment.
 * Whether Splitwise's runs used vLLM is not confirmed here; the scheduler
 * below models vLLM's, the costs are Splitwise's measurements.
 */

export interface Calibration {
  /** Model and GPU the coefficients describe (for logs and reports). */
  readonly name: string;
  readonly overheadMs: number;
  readonly weightsMs: number;
  readonly decodeMsPerSeq: number;
  readonly prefillMsPerToken: number;
}

export const LLAMA2_70B_H100: Calibration = {
  name: 'llama2-70b/h100-80gb (Splitwise ISCA 2024 profiling data)',
  overheadMs: 11.6,
  weightsMs: 25.1,
  decodeMsPerSeq: 0.462,
  prefillMsPerToken: 0.1456,
};

/** What one step runs: prompt tokens being prefilled and sequences decoding one token each. */
export interface StepLoad {
  prefillTokens: number;
  decodeSeqs: number;
}

/** Model time of one step, in ms; 0 for an empty step. */
export function stepTimeMs({ prefillTokens, decodeSeqs }: StepLoad, cal: Calibration = LLAMA2_70B_H100): number {
  if (prefillTokens + decodeSeqs === 0) return 0;
  const memoryMs = cal.weightsMs + cal.decodeMsPerSeq * decodeSeqs;
  const computeMs = cal.prefillMsPerToken * (prefillTokens + decodeSeqs);
  return cal.overheadMs + Math.max(memoryMs, computeMs);
}
