// The OpenAI request fields the gateway checks before anything reaches vLLM. Every other field,
// vLLM's sampling extras included, passes through untouched (additionalProperties is open).
import { Type, type Static } from '@sinclair/typebox';

export interface RequestLimits {
  maxTokensCap: number;
  maxChoices: number;
  maxMessages: number;
}

export const messageRoles = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;

const stop = Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 16 }), Type.Null()]);

function samplingFields(limits: RequestLimits) {
  const tokens = Type.Union([Type.Integer({ minimum: 1, maximum: limits.maxTokensCap }), Type.Null()]);
  return {
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    stream_options: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])),
    temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
    top_p: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()])),
    max_tokens: Type.Optional(tokens),
    n: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: limits.maxChoices }), Type.Null()])),
    stop: Type.Optional(stop),
  };
}

export function chatCompletionRequestSchema(limits: RequestLimits) {
  return Type.Object(
    {
      ...samplingFields(limits),
      messages: Type.Array(
        Type.Object(
          {
            role: Type.Union(messageRoles.map((role) => Type.Literal(role))),
            content: Type.Optional(Type.Union([Type.String(), Type.Array(Type.Object({}, { additionalProperties: true })), Type.Null()])),
          },
          { additionalProperties: true },
        ),
        { minItems: 1, maxItems: limits.maxMessages },
      ),
      max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: limits.maxTokensCap }), Type.Null()])),
    },
    { additionalProperties: true },
  );
}

export function completionRequestSchema(limits: RequestLimits) {
  return Type.Object(
    {
      ...samplingFields(limits),
      prompt: Type.Union([
        Type.String(),
        Type.Array(Type.String(), { minItems: 1, maxItems: limits.maxChoices * 16 }),
        Type.Array(Type.Integer(), { minItems: 1 }),
        Type.Array(Type.Array(Type.Integer()), { minItems: 1 }),
      ]),
    },
    { additionalProperties: true },
  );
}

export type ChatCompletionRequest = Static<ReturnType<typeof chatCompletionRequestSchema>>;
export type CompletionRequest = Static<ReturnType<typeof completionRequestSchema>>;
