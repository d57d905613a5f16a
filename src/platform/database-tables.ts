// The tables Kysely knows about. Each feature adds its tables here when its migration lands;
// the columns mirror migrations/*.up.sql.
import type { ColumnType, Generated } from 'kysely';

export type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface UsersTable {
  id: Generated<string>;
  email: string;
  display_name: string | null;
  password_hash: string;
  role: 'user' | 'admin';
  status: 'active' | 'disabled';
  token_version: Generated<number>;
  rate_limit_requests: number | null;
  rate_limit_window_seconds: number | null;
  token_quota_per_minute: number | null;
  token_quota_per_day: number | null;
  max_concurrent_streams: number | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface SessionsTable {
  id: Generated<string>;
  user_id: string;
  user_agent: string | null;
  ip: string | null;
  created_at: Generated<Date>;
  last_used_at: Generated<Date>;
  expires_at: Timestamp;
  revoked_at: Timestamp | null;
  revoked_reason: string | null;
}

export interface RefreshTokensTable {
  id: Generated<string>;
  session_id: string;
  token_hash: string;
  parent_id: string | null;
  status: Generated<'active' | 'rotated' | 'revoked'>;
  created_at: Generated<Date>;
  rotated_at: Timestamp | null;
  expires_at: Timestamp;
}

export interface ApiKeysTable {
  id: Generated<string>;
  user_id: string;
  name: string;
  prefix: string;
  key_hash: string;
  created_at: Generated<Date>;
  last_used_at: Timestamp | null;
  expires_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

export interface UsageEventsTable {
  id: Generated<number>;
  created_at: Timestamp;
  user_id: string;
  api_key_id: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  status: string;
  finish_reason: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  usage_estimated: boolean;
  ttft_ms: number | null;
  duration_ms: number;
  request_id: string;
}

export interface ConversationsTable {
  id: Generated<string>;
  user_id: string;
  title: string;
  model: string | null;
  system_prompt: string | null;
  settings: ColumnType<Record<string, unknown>, string | undefined, string>;
  message_count: Generated<number>;
  last_message_at: Timestamp | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export type MessageStatus = 'complete' | 'streaming' | 'interrupted' | 'error';

export interface MessagesTable {
  id: Generated<string>;
  position: Generated<number>;
  conversation_id: string;
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: Generated<string>;
  status: Generated<MessageStatus>;
  status_reason: string | null;
  finish_reason: string | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  ttft_ms: number | null;
  duration_ms: number | null;
  request_id: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface ChatTurnKeysTable {
  user_id: string;
  idempotency_key: string;
  conversation_id: string;
  user_message_id: string;
  created_at: Generated<Date>;
}

export interface DatabaseTables {
  users: UsersTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  api_keys: ApiKeysTable;
  usage_events: UsageEventsTable;
  conversations: ConversationsTable;
  messages: MessagesTable;
  chat_turn_keys: ChatTurnKeysTable;
}
