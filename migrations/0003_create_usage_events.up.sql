-- One row per generation request: who asked, what model, how many tokens vLLM counted, how it
-- ended and how long it took. Append-only, written in batches off the request path.
CREATE TABLE usage_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL,
  endpoint text NOT NULL,
  model text NOT NULL,
  stream boolean NOT NULL,
  status text NOT NULL,
  finish_reason text,
  prompt_tokens integer NOT NULL DEFAULT 0,
  completion_tokens integer NOT NULL DEFAULT 0,
  -- True when vLLM reported no usage (an aborted stream) and the counts are the gateway's estimate.
  usage_estimated boolean NOT NULL DEFAULT false,
  ttft_ms integer,
  duration_ms integer NOT NULL,
  request_id text NOT NULL
);

CREATE INDEX usage_events_user_created_idx ON usage_events (user_id, created_at);
CREATE INDEX usage_events_created_idx ON usage_events (created_at);
