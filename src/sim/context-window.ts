// Counts a request's prompt tokens (as POST /tokenize would) and applies vLLM's context-length
// rules: the prompt must leave room for one token, and max_tokens must fit in what is left.
import { renderChatPrompt } from './chat-template.js';
import { badRequest, type SimulatorError } from './errors.js';
import type { ParsedGeneration } from './generation-request.js';
import { countTokens } from './tokenizer.js';

export interface PreparedPrompt {
  /** What seeds the generated text; token-id prompts use the ids. */
  text: string;
  tokenCount: number;
}

/** `/v1/completions` generates 16 tokens unless told otherwise. */
export const COMPLETION_DEFAULT_MAX_TOKENS = 16;

export function preparePrompts(parsed: ParsedGeneration): PreparedPrompt[] {
  if (parsed.kind === 'chat') {
    const text = renderChatPrompt(parsed.messages, parsed.addGenerationPrompt);
    return [{ text, tokenCount: countTokens(text) }];
  }
  return parsed.prompts.map((prompt) =>
    typeof prompt === 'string' ? { text: prompt, tokenCount: countTokens(prompt) } : { text: prompt.join(','), tokenCount: prompt.length },
  );
}

export type TokenLimitResult = { ok: true; tokenLimits: number[] } | { ok: false; error: SimulatorError };

/** The most tokens each prompt's choices may generate, or vLLM's 400 when the request cannot fit. */
export function tokenLimits(options: {
  prompts: readonly PreparedPrompt[];
  parsed: ParsedGeneration;
  contextLength: number;
}): TokenLimitResult {
  const { prompts, parsed, contextLength } = options;
  const requested = parsed.maxTokens ?? (parsed.kind === 'completion' ? COMPLETION_DEFAULT_MAX_TOKENS : null);
  const limits: number[] = [];
  for (const prompt of prompts) {
    if (prompt.tokenCount >= contextLength) {
      const message =
        `This model's maximum context length is ${contextLength} tokens. However, your request has ` +
        `${prompt.tokenCount} input tokens. Please reduce the length of the input messages.`;
      return { ok: false, error: badRequest(message, 'input_tokens') };
    }
    const available = contextLength - prompt.tokenCount;
    if (requested !== null && requested > available) {
      const message =
        `'max_tokens' or 'max_completion_tokens' is too large: ${requested}. This model's maximum context length ` +
        `is ${contextLength} tokens and your request has ${prompt.tokenCount} input tokens ` +
        `(${requested} > ${contextLength} - ${prompt.tokenCount}).`;
      return { ok: false, error: badRequest(message, parsed.maxTokensParam) };
    }
    limits.push(requested ?? available);
  }
  return { ok: true, tokenLimits: limits };
}
