// Database records → the API's JSON shapes.
import type { ConversationRecord, MessageRecord } from './repository.js';
import type { ConversationView, MessageView } from './schemas.js';

export function toConversationView(conversation: ConversationRecord): ConversationView {
  return {
    id: conversation.id,
    title: conversation.title,
    model: conversation.model,
    system_prompt: conversation.system_prompt,
    settings: conversation.settings,
    message_count: conversation.message_count,
    last_message_at: conversation.last_message_at?.toISOString() ?? null,
    created_at: conversation.created_at.toISOString(),
    updated_at: conversation.updated_at.toISOString(),
  };
}

export function toMessageView(message: MessageRecord): MessageView {
  return {
    id: message.id,
    conversation_id: message.conversation_id,
    role: message.role,
    content: message.content,
    status: message.status,
    status_reason: message.status_reason,
    finish_reason: message.finish_reason,
    model: message.model,
    prompt_tokens: message.prompt_tokens,
    completion_tokens: message.completion_tokens,
    ttft_ms: message.ttft_ms,
    duration_ms: message.duration_ms,
    created_at: message.created_at.toISOString(),
  };
}
