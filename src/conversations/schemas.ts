// Shapes of /api/conversations: conversations, their messages, and the default sampling settings
// a conversation keeps for its next turns.
import { Type, type Static } from '@sinclair/typebox';

const timestamp = Type.String({ format: 'date-time' });
const nullableTimestamp = Type.Union([timestamp, Type.Null()]);
const nullableString = Type.Union([Type.String(), Type.Null()]);
const nullableInteger = Type.Union([Type.Integer(), Type.Null()]);

export function conversationSettingsSchema(maxTokensCap: number) {
  return Type.Object(
    {
      temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
      top_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      max_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: maxTokensCap })),
      top_k: Type.Optional(Type.Integer({ minimum: -1, maximum: 100_000 })),
      min_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      presence_penalty: Type.Optional(Type.Number({ minimum: -2, maximum: 2 })),
      frequency_penalty: Type.Optional(Type.Number({ minimum: -2, maximum: 2 })),
      repetition_penalty: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 10 })),
      seed: Type.Optional(Type.Integer()),
      stop: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Array(Type.String({ maxLength: 200 }), { maxItems: 16 })])),
    },
    { additionalProperties: false },
  );
}
export type ConversationSettings = Static<ReturnType<typeof conversationSettingsSchema>>;

export const conversationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  title: Type.String(),
  model: nullableString,
  system_prompt: nullableString,
  settings: Type.Object({}, { additionalProperties: true }),
  message_count: Type.Integer(),
  last_message_at: nullableTimestamp,
  created_at: timestamp,
  updated_at: timestamp,
});
export type ConversationView = Static<typeof conversationSchema>;

export const messageSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  conversation_id: Type.String({ format: 'uuid' }),
  role: Type.String(),
  content: Type.String(),
  status: Type.Union([Type.Literal('complete'), Type.Literal('streaming'), Type.Literal('interrupted'), Type.Literal('error')]),
  status_reason: nullableString,
  finish_reason: nullableString,
  model: nullableString,
  prompt_tokens: nullableInteger,
  completion_tokens: nullableInteger,
  ttft_ms: nullableInteger,
  duration_ms: nullableInteger,
  created_at: timestamp,
});
export type MessageView = Static<typeof messageSchema>;

const title = Type.String({ minLength: 1, maxLength: 200 });
const model = Type.String({ minLength: 1, maxLength: 256 });
const systemPrompt = Type.String({ maxLength: 100_000 });

export function createConversationBodySchema(maxTokensCap: number) {
  return Type.Object(
    {
      title: Type.Optional(title),
      model: Type.Optional(model),
      system_prompt: Type.Optional(systemPrompt),
      settings: Type.Optional(conversationSettingsSchema(maxTokensCap)),
    },
    { additionalProperties: false },
  );
}

export function updateConversationBodySchema(maxTokensCap: number) {
  return Type.Object(
    {
      title: Type.Optional(title),
      model: Type.Optional(Type.Union([model, Type.Null()])),
      system_prompt: Type.Optional(Type.Union([systemPrompt, Type.Null()])),
      settings: Type.Optional(conversationSettingsSchema(maxTokensCap)),
    },
    { additionalProperties: false, minProperties: 1 },
  );
}
export type CreateConversationBody = Static<ReturnType<typeof createConversationBodySchema>>;
export type UpdateConversationBody = Static<ReturnType<typeof updateConversationBodySchema>>;

export const listConversationsQuerySchema = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Part of the title, case-insensitive' })),
  },
  { additionalProperties: false },
);

export const listMessagesQuerySchema = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })), cursor: Type.Optional(Type.String({ maxLength: 200 })) },
  { additionalProperties: false },
);
