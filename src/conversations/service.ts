// Conversations belong to one user: every operation takes the caller's id, and a conversation of
// someone else's answers exactly as a missing one (404).
import { GatewayError } from '../errors.js';
import { decodeCursor, decodePositionCursor, encodeCursor, encodePositionCursor, pageOf } from '../platform/cursor.js';
import { isUuid } from '../platform/identifiers.js';
import type { ConversationRecord, ConversationsRepository, MessageRecord } from './repository.js';
import type { CreateConversationBody, UpdateConversationBody } from './schemas.js';

export const untitled = 'New conversation';

export function createConversationsService(dependencies: { conversations: ConversationsRepository }) {
  const { conversations } = dependencies;

  async function getOwned(id: string, userId: string): Promise<ConversationRecord> {
    const conversation = isUuid(id) ? await conversations.findOwned(id, userId) : undefined;
    if (conversation === undefined) throw new GatewayError('not_found', 'Conversation not found');
    return conversation;
  }

  return {
    getOwned,

    create(userId: string, body: CreateConversationBody): Promise<ConversationRecord> {
      return conversations.create({
        userId,
        title: body.title?.trim() || untitled,
        model: body.model ?? null,
        systemPrompt: body.system_prompt ?? null,
        settings: body.settings ?? {},
      });
    },

    async list(input: { userId: string; limit?: number | undefined; cursor?: string | undefined; search?: string | undefined }) {
      const limit = input.limit ?? 20;
      const after = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
      const rows = await conversations.list({ userId: input.userId, limit: limit + 1, search: input.search, after });
      const page = pageOf(rows, limit, (last) => encodeCursor({ atMicros: last.activity_micros, id: last.id }));
      return { conversations: page.items, nextCursor: page.nextCursor };
    },

    async update(input: { id: string; userId: string; body: UpdateConversationBody }): Promise<ConversationRecord> {
      if (!isUuid(input.id)) throw new GatewayError('not_found', 'Conversation not found');
      const { body } = input;
      const updated = await conversations.update({
        id: input.id,
        userId: input.userId,
        changes: { title: body.title?.trim(), model: body.model, systemPrompt: body.system_prompt, settings: body.settings },
      });
      if (updated === undefined) throw new GatewayError('not_found', 'Conversation not found');
      return updated;
    },

    async delete(id: string, userId: string): Promise<void> {
      if (!isUuid(id) || !(await conversations.delete(id, userId))) throw new GatewayError('not_found', 'Conversation not found');
    },

    async listMessages(input: { id: string; userId: string; limit?: number | undefined; cursor?: string | undefined }): Promise<{ messages: MessageRecord[]; nextCursor: string | null }> {
      await getOwned(input.id, input.userId);
      const limit = input.limit ?? 50;
      const afterPosition = input.cursor === undefined ? undefined : decodePositionCursor(input.cursor);
      const rows = await conversations.listMessages({ conversationId: input.id, limit: limit + 1, afterPosition });
      const page = pageOf(rows, limit, (last) => encodePositionCursor(last.position));
      return { messages: page.items, nextCursor: page.nextCursor };
    },
  };
}

export type ConversationsService = ReturnType<typeof createConversationsService>;
