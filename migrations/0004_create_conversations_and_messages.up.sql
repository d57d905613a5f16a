-- Conversations and their messages. A message is written before generation starts (status
-- 'streaming') and completed after, so a turn is never lost; `position` orders messages
-- chronologically even when two share a timestamp (one transaction writes both sides of a turn).
CREATE TABLE conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title text NOT NULL,
  model text,
  system_prompt text,
  settings jsonb NOT NULL DEFAULT '{}'::jsonb,
  message_count integer NOT NULL DEFAULT 0,
  last_message_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Newest activity first: last_message_at, or created_at for a conversation without messages.
CREATE INDEX conversations_user_activity_idx ON conversations (user_id, (coalesce(last_message_at, created_at)) DESC, id DESC);

CREATE TABLE messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  position bigint GENERATED ALWAYS AS IDENTITY,
  conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('system', 'developer', 'user', 'assistant', 'tool')),
  content text NOT NULL DEFAULT '',
  status text NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'streaming', 'interrupted', 'error')),
  status_reason text,
  finish_reason text,
  model text,
  prompt_tokens integer,
  completion_tokens integer,
  ttft_ms integer,
  duration_ms integer,
  request_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX messages_conversation_position_idx ON messages (conversation_id, position);
CREATE INDEX messages_streaming_idx ON messages (created_at) WHERE status = 'streaming';
-- Idempotency-Key claims: the first send with a key claims it (in the transaction that writes the
-- turn); a retry, even one arriving at the same moment, finds the claim and the turn it points to.
CREATE TABLE chat_turn_keys (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  idempotency_key text NOT NULL,
  conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  user_message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, idempotency_key)
);
