// SQL for conversations and messages. Every query names the owner, so another user's conversation
// is simply not found. A turn (user message + assistant placeholder) is written in one statement
// (turn-start.ts); no transaction or connection is held while vLLM generates.
import { sql, type Selectable, type Transaction } from 'kysely';
import type { ConversationsTable, DatabaseTables, MessagesTable, MessageStatus } from '../platform/database-tables.js';
import type { Database } from '../platform/database.js';
import { GatewayError } from '../errors.js';
import { sqlStateOf } from '../platform/database-errors.js';
import { storableOptionalText, storableText } from '../platform/storable-text.js';
import { writeTurnStart, type TurnStart } from './turn-start.js';
import { microsecondsSinceEpoch, timestampFromMicroseconds } from '../platform/sql-time.js';

const conversationColumns = ['id', 'user_id', 'title', 'model', 'system_prompt', 'settings', 'message_count', 'last_message_at', 'created_at', 'updated_at'] as const;
const messageColumns = [
  'id',
  'position',
  'conversation_id',
  'role',
  'content',
  'status',
  'status_reason',
  'finish_reason',
  'model',
  'prompt_tokens',
  'completion_tokens',
  'ttft_ms',
  'duration_ms',
  'created_at',
] as const;

export type ConversationRecord = Pick<Selectable<ConversationsTable>, (typeof conversationColumns)[number]>;
export type MessageRecord = Pick<Selectable<MessagesTable>, (typeof messageColumns)[number]>;

export interface NewConversation {
  userId: string;
  title: string;
  model: string | null;
  systemPrompt: string | null;
  settings: Record<string, unknown>;
}

export interface AssistantOutcome {
  content: string;
  status: MessageStatus;
  statusReason: string | null;
  finishReason: string | null;
  model: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  ttftMs: number | null;
  durationMs: number;
  requestId: string;
}

const activity = sql<Date>`coalesce(last_message_at, created_at)`;

function isForeignKeyViolation(error: unknown): boolean {
  return sqlStateOf(error) === '23503';
}

export function createConversationsRepository(db: Database) {
  async function insertConversation(executor: Database | Transaction<DatabaseTables>, input: NewConversation): Promise<ConversationRecord> {
    return executor
      .insertInto('conversations')
      .values({ user_id: input.userId, title: input.title, model: input.model, system_prompt: input.systemPrompt, settings: JSON.stringify(input.settings) })
      .returning(conversationColumns)
      .executeTakeFirstOrThrow();
  }

  return {
    create: (input: NewConversation) => insertConversation(db, input),

    async findOwned(id: string, userId: string): Promise<ConversationRecord | undefined> {
      return db.selectFrom('conversations').select(conversationColumns).where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
    },

    async list(input: { userId: string; limit: number; search?: string | undefined; after?: { atMicros: number; id: string } | undefined }) {
      let query = db
        .selectFrom('conversations')
        .select([...conversationColumns, microsecondsSinceEpoch(activity).as('activity_micros')])
        .where('user_id', '=', input.userId);
      if (input.search !== undefined) {
        const escaped = input.search.toLowerCase().replace(/[\\%_]/g, (character) => `\\${character}`);
        query = query.where(sql<string>`lower(title)`, 'like', `%${escaped}%`);
      }
      if (input.after !== undefined) {
        const at = timestampFromMicroseconds(input.after.atMicros);
        const id = input.after.id;
        query = query.where((eb) => eb.or([eb(activity, '<', at), eb.and([eb(activity, '=', at), eb('id', '<', id)])]));
      }
      return query.orderBy(activity, 'desc').orderBy('id', 'desc').limit(input.limit).execute();
    },

    async update(input: { id: string; userId: string; changes: { title?: string | undefined; model?: string | null | undefined; systemPrompt?: string | null | undefined; settings?: Record<string, unknown> | undefined } }) {
      const { changes } = input;
      return db
        .updateTable('conversations')
        .set({
          ...(changes.title === undefined ? {} : { title: changes.title }),
          ...(changes.model === undefined ? {} : { model: changes.model }),
          ...(changes.systemPrompt === undefined ? {} : { system_prompt: changes.systemPrompt }),
          ...(changes.settings === undefined ? {} : { settings: JSON.stringify(changes.settings) }),
          updated_at: sql`now()`,
        })
        .where('id', '=', input.id)
        .where('user_id', '=', input.userId)
        .returning(conversationColumns)
        .executeTakeFirst();
    },

    async delete(id: string, userId: string): Promise<boolean> {
      const result = await db.deleteFrom('conversations').where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    async listMessages(input: { conversationId: string; limit: number; afterPosition?: number | undefined }): Promise<MessageRecord[]> {
      let query = db.selectFrom('messages').select(messageColumns).where('conversation_id', '=', input.conversationId);
      if (input.afterPosition !== undefined) query = query.where('position', '>', input.afterPosition);
      return query.orderBy('position', 'asc').limit(input.limit).execute();
    },

    /** The newest `limit` messages worth sending back to the model, oldest first. */
    async history(conversationId: string, limit: number): Promise<MessageRecord[]> {
      const newestFirst = await db
        .selectFrom('messages')
        .select(messageColumns)
        .where('conversation_id', '=', conversationId)
        .where('content', '!=', '')
        .where('status', 'in', ['complete', 'interrupted'])
        .orderBy('position', 'desc')
        .limit(limit)
        .execute();
      return newestFirst.reverse();
    },

    /**
     * Writes the start of a turn in one statement (turn-start.ts) with the ids the caller chose.
     * `duplicate` when another request already claimed the Idempotency-Key: nothing is written then.
     */
    async startTurn(input: TurnStart): Promise<'written' | 'duplicate'> {
      try {
        if (await writeTurnStart(db, input)) return 'written';
      } catch (error) {
        // The conversation was deleted while the turn was being written: its claim lost its target.
        if (isForeignKeyViolation(error)) throw new GatewayError('not_found', 'Conversation not found');
        throw error;
      }
      if (input.idempotencyKey !== null) {
        const claim = await db.selectFrom('chat_turn_keys').select('user_id').where('user_id', '=', input.userId).where('idempotency_key', '=', input.idempotencyKey).executeTakeFirst();
        if (claim !== undefined) return 'duplicate';
      }
      throw new GatewayError('not_found', 'Conversation not found');
    },

    /** Completes the assistant message with what the stream produced, whatever its ending. */
    async finishAssistant(messageId: string, outcome: AssistantOutcome): Promise<void> {
      await db
        .updateTable('messages')
        .set({
          // vLLM's words as they came, less any U+0000 (which would make the whole answer unstorable).
          content: storableText(outcome.content),
          status: outcome.status,
          status_reason: storableOptionalText(outcome.statusReason),
          finish_reason: storableOptionalText(outcome.finishReason),
          model: storableOptionalText(outcome.model),
          prompt_tokens: outcome.promptTokens,
          completion_tokens: outcome.completionTokens,
          ttft_ms: outcome.ttftMs,
          duration_ms: outcome.durationMs,
          request_id: outcome.requestId,
          updated_at: sql`now()`,
        })
        .where('id', '=', messageId)
        .execute();
    },

    /** The turn a request with this Idempotency-Key already started, if any. */
    async findTurnByIdempotencyKey(userId: string, key: string) {
      const claim = await db
        .selectFrom('chat_turn_keys')
        .innerJoin('messages', 'messages.id', 'chat_turn_keys.user_message_id')
        .select(['chat_turn_keys.conversation_id', 'chat_turn_keys.user_message_id', 'messages.position'])
        .where('chat_turn_keys.user_id', '=', userId)
        .where('chat_turn_keys.idempotency_key', '=', key)
        .executeTakeFirst();
      if (claim === undefined) return undefined;
      const assistant = await db
        .selectFrom('messages')
        .select(messageColumns)
        .where('conversation_id', '=', claim.conversation_id)
        .where('role', '=', 'assistant')
        .where('position', '>', claim.position)
        .orderBy('position', 'asc')
        .limit(1)
        .executeTakeFirst();
      return { conversationId: claim.conversation_id, userMessageId: claim.user_message_id, assistant };
    },

    /** The owner and state of a message, for stop requests. */
    async findMessageForOwner(messageId: string, userId: string) {
      return db
        .selectFrom('messages')
        .innerJoin('conversations', 'conversations.id', 'messages.conversation_id')
        .select(['messages.id', 'messages.status', 'messages.role'])
        .where('messages.id', '=', messageId)
        .where('conversations.user_id', '=', userId)
        .executeTakeFirst();
    },

    /** Marks messages left in `streaming` by a gateway that died as interrupted. */
    async interruptStale(olderThan: Date): Promise<number> {
      const result = await db
        .updateTable('messages')
        .set({ status: 'interrupted', status_reason: 'the gateway stopped while generating', updated_at: sql`now()` })
        .where('status', '=', 'streaming')
        .where('created_at', '<', olderThan)
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
  };
}

export type ConversationsRepository = ReturnType<typeof createConversationsRepository>;
