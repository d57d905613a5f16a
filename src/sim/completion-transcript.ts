// The bytes of /v1/completions: `text_completion` chunks with every key present (`"usage":null`
// until the usage chunk), no role chunk, and the non-streaming `text_completion` body.
import type { ChoicePlan } from './text-generator.js';
import { compactUsage, fullUsage, type TokenChunk, type Transcript, type TranscriptIdentity } from './transcript.js';

export function createCompletionTranscript(identity: TranscriptIdentity): Transcript {
  const prefix = `{"id":${JSON.stringify(identity.id)},"object":"text_completion","created":${identity.created},"model":${JSON.stringify(identity.model)},"choices":[`;

  return {
    openingChunks() {
      return [];
    },

    tokenChunk(chunk: TokenChunk) {
      const finishReason = chunk.finish === null ? 'null' : `"${chunk.finish.reason}"`;
      const stopReason = JSON.stringify(chunk.finish?.stopReason ?? null);
      // Completion chunks are dumped with every field, so continuous usage carries prompt_tokens_details.
      const usage = chunk.usage === null ? 'null' : fullUsage(chunk.usage);
      return `${prefix}{"index":${chunk.choiceIndex},"text":${JSON.stringify(chunk.text)},"logprobs":null,"finish_reason":${finishReason},"stop_reason":${stopReason},"prompt_token_ids":null,"token_ids":null}],"usage":${usage}}`;
    },

    usageChunk(usage) {
      // The final usage chunk is dumped without None fields.
      return `${prefix}],"usage":${compactUsage(usage)}}`;
    },

    response(plans: readonly ChoicePlan[], usage) {
      const choices = plans.map((plan) => ({
        index: plan.index,
        text: plan.text,
        logprobs: null,
        finish_reason: plan.finishReason,
        stop_reason: plan.stopReason,
        token_ids: null,
        prompt_logprobs: null,
        prompt_token_ids: null,
      }));
      const head = JSON.stringify({ id: identity.id, object: 'text_completion', created: identity.created, model: identity.model, choices });
      return `${head.slice(0, -1)},"service_tier":null,"system_fingerprint":null,"usage":${fullUsage(usage)},"kv_transfer_params":null}`;
    },
  };
}
