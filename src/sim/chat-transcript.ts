// The bytes of /v1/chat/completions: `chat.completion.chunk` events (role chunk first, one finish
// chunk per choice) and the `chat.completion` body, keys in the order vLLM's pydantic models emit.
import type { ChoicePlan } from './text-generator.js';
import { compactUsage, fullUsage, type TokenChunk, type Transcript, type TranscriptIdentity, type UsageCounts } from './transcript.js';

export function createChatTranscript(identity: TranscriptIdentity): Transcript {
  // Every chunk starts the same way; building the prefix once keeps a token event to one concatenation.
  const prefix = `{"id":${JSON.stringify(identity.id)},"object":"chat.completion.chunk","created":${identity.created},"model":${JSON.stringify(identity.model)},"choices":[`;
  const usageField = (usage: UsageCounts | null): string => (usage === null ? '' : `,"usage":${compactUsage(usage)}`);

  return {
    openingChunks(usage) {
      const chunks: string[] = [];
      for (let choiceIndex = 0; choiceIndex < identity.choiceCount; choiceIndex++) {
        chunks.push(
          `${prefix}{"index":${choiceIndex},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usageField(usage)},"prompt_token_ids":null}`,
        );
      }
      return chunks;
    },

    tokenChunk(chunk: TokenChunk) {
      const delta = `{"content":${JSON.stringify(chunk.text)}}`;
      const ending =
        chunk.finish === null
          ? '"finish_reason":null'
          : `"finish_reason":"${chunk.finish.reason}","stop_reason":${JSON.stringify(chunk.finish.stopReason)}`;
      return `${prefix}{"index":${chunk.choiceIndex},"delta":${delta},"logprobs":null,${ending},"token_ids":null}]${usageField(chunk.usage)}}`;
    },

    usageChunk(usage) {
      return `${prefix}],"usage":${compactUsage(usage)}}`;
    },

    response(plans: readonly ChoicePlan[], usage) {
      const choices = plans.map((plan) => ({
        index: plan.index,
        message: {
          role: 'assistant',
          content: plan.text,
          refusal: null,
          annotations: null,
          audio: null,
          function_call: null,
          tool_calls: [],
          reasoning: null,
        },
        logprobs: null,
        finish_reason: plan.finishReason,
        stop_reason: plan.stopReason,
        token_ids: null,
      }));
      const head = JSON.stringify({ id: identity.id, object: 'chat.completion', created: identity.created, model: identity.model, choices });
      return `${head.slice(0, -1)},"service_tier":null,"system_fingerprint":null,"usage":${fullUsage(usage)},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`;
    },
  };
}
