// What a transcript builder provides: the JSON of each SSE event and of the non-streaming body,
// byte for byte as vLLM writes them; chat and completions each implement it.
import type { ChoicePlan } from './text-generator.js';

export interface UsageCounts {
  promptTokens: number;
  completionTokens: number;
}

export interface TokenChunk {
  choiceIndex: number;
  text: string;
  /** Set on the choice's last token only. */
  finish: { reason: 'stop' | 'length'; stopReason: string | null } | null;
  /** Cumulative usage of this choice, with `continuous_usage_stats` only. */
  usage: UsageCounts | null;
}

export interface Transcript {
  /** Events sent once the first token is ready, before it (chat: one role chunk per choice). */
  openingChunks(usage: UsageCounts | null): string[];
  tokenChunk(chunk: TokenChunk): string;
  usageChunk(usage: UsageCounts): string;
  response(plans: readonly ChoicePlan[], usage: UsageCounts): string;
}

export interface TranscriptIdentity {
  id: string;
  created: number;
  model: string;
  choiceCount: number;
}

/** `"usage"` as vLLM writes it when unset fields are excluded (no prompt_tokens_details). */
export function compactUsage(usage: UsageCounts): string {
  return `{"prompt_tokens":${usage.promptTokens},"total_tokens":${usage.promptTokens + usage.completionTokens},"completion_tokens":${usage.completionTokens}}`;
}

/** `"usage"` as vLLM writes it with every field (non-streaming bodies, completion chunks). */
export function fullUsage(usage: UsageCounts): string {
  return `{"prompt_tokens":${usage.promptTokens},"total_tokens":${usage.promptTokens + usage.completionTokens},"completion_tokens":${usage.completionTokens},"prompt_tokens_details":null}`;
}
