/**
 * Chat on the CPU with a GGUF model via node-llama-cpp. One context holds one
 * sequence per concurrent request (sequences share each evaluation batch,
 * which is faster than one context per request); a request borrows a
 * sequence and returns it when done, or waits while all are busy.
 *
 * The default model (stories260K) is a completion model with no chat template
 * that follows no instructions, so we use plain completion, never a chat
 * session. The prompt is the text of the LAST USER MESSAGE only: system
 * prompts and earlier turns would just be text the model continues, and the
 * newest user text is what a caller expects an answer to (see `chatPrompt`).
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getLlama, LlamaCompletion, LlamaLogLevel } from 'node-llama-cpp';
import type { Llama, LlamaContext, LlamaModel } from 'node-llama-cpp';
import type { ChatInput, ChatMessage, ChatOutput } from '../../common/contracts/tasks.ts';
import { messageText } from '../../common/contracts/tasks.ts';
import { FleetError } from '../../common/errors.ts';
import type { RunOptions } from './backend.ts';
import { SlotPool } from './slot-pool.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** node-llama-cpp's suggested default; the model is too small to stay coherent at OpenAI's 1.0. */
export const DEFAULT_TEMPERATURE = 0.8;
/** Per-sequence context; the model was trained on 2048, and more only costs memory. */
const MAX_CONTEXT_TOKENS = 2048;
/** llama.cpp's limit per context (LLAMA_MAX_SEQ); requests beyond it wait for a free sequence. */
const MAX_SEQUENCES = 256;

export interface EmbeddedLlmOptions {
  modelPath: string;
  /** How many requests generate at once (one context sequence each). */
  sequences: number;
  /** Token cap for requests that set no maxTokens. */
  defaultMaxTokens: number;
}

/**
 * Resolves a model path: absolute as is; relative against the working
 * directory first, then against the repository root (so the vendored default
 * works from any cwd). Throws `internal` naming every path tried.
 */
export function resolveModelPath(modelPath: string, cwd: string = process.cwd()): string {
  const candidates = isAbsolute(modelPath) ? [modelPath] : [resolve(cwd, modelPath), resolve(repoRoot, modelPath)];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new FleetError(
      'internal',
      `model file not found: "${modelPath}" (tried ${[...new Set(candidates)].join(', ')})`,
    );
  }
  return found;
}

/** The completion prompt: the last user message's text, else the last message with any text. */
export function chatPrompt(messages: readonly ChatMessage[]): string {
  const lastUser = messages.findLast((m) => m.role === 'user');
  if (lastUser !== undefined) return messageText(lastUser);
  return messages.map(messageText).findLast((t) => t !== '') ?? '';
}

export class EmbeddedLlm {
  private constructor(
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly slots: SlotPool<LlamaCompletion>,
    private readonly defaultMaxTokens: number,
  ) {}

  static async load(opts: EmbeddedLlmOptions): Promise<EmbeddedLlm> {
    const modelPath = resolveModelPath(opts.modelPath);
    // maxThreads 1: on small CPU counts llama.cpp's default thread count makes
    // generation collapse to a few tokens/s; build 'never': fail, never compile.
    const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 1, logLevel: LlamaLogLevel.error });
    try {
      const model = await llama.loadModel({ modelPath });
      const sequences = Math.min(opts.sequences, MAX_SEQUENCES);
      const context = await model.createContext({
        sequences,
        contextSize: Math.min(model.trainContextSize, MAX_CONTEXT_TOKENS),
        threads: 1,
        // 'auto' turns flash attention on, which measured ~2x slower on CPU over 4 sequences.
        flashAttention: false,
      });
      const completions = Array.from(
        { length: sequences },
        () => new LlamaCompletion({ contextSequence: context.getSequence() }),
      );
      return new EmbeddedLlm(llama, model, context, new SlotPool(completions), opts.defaultMaxTokens);
    } catch (err) {
      await llama.dispose();
      throw new FleetError('internal', `cannot load model ${modelPath}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Prompt tokens as the model's tokenizer counts them (without BOS). */
  countTokens(text: string): number {
    return this.model.tokenize(text).length;
  }

  async generate(input: ChatInput, { signal, onDelta }: RunOptions): Promise<ChatOutput> {
    const prompt = chatPrompt(input.messages);
    const completion = await this.slots.acquire(signal);
    let completionTokens = 0;
    try {
      // No stopOnAbortSignal: on abort node-llama-cpp rejects with signal.reason, as the seam requires.
      const { response, metadata } = await completion.generateCompletionWithMeta(prompt, {
        signal,
        maxTokens: input.maxTokens ?? this.defaultMaxTokens,
        temperature: input.temperature ?? DEFAULT_TEMPERATURE,
        ...(input.topP !== undefined && { topP: input.topP }),
        ...(input.seed !== undefined && { seed: input.seed }),
        ...(input.stop !== undefined && input.stop.length > 0 && { customStopTriggers: input.stop }),
        onToken: (tokens) => {
          completionTokens += tokens.length;
        },
        ...(onDelta !== undefined && { onTextChunk: onDelta }),
      });
      return {
        task: 'chat',
        text: response,
        finishReason: metadata.stopReason === 'maxTokens' ? 'length' : 'stop',
        usage: { promptTokens: this.countTokens(prompt), completionTokens },
      };
    } finally {
      this.slots.release(completion);
    }
  }

  async close(): Promise<void> {
    this.slots.close();
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }
}
