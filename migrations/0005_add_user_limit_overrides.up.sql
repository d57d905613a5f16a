-- Per-user limits set by an administrator; NULL means the default for the user's role.
ALTER TABLE users
  ADD COLUMN rate_limit_requests integer CHECK (rate_limit_requests > 0),
  ADD COLUMN rate_limit_window_seconds integer CHECK (rate_limit_window_seconds > 0),
  ADD COLUMN token_quota_per_minute integer CHECK (token_quota_per_minute >= 0),
  ADD COLUMN token_quota_per_day integer CHECK (token_quota_per_day >= 0),
  ADD COLUMN max_concurrent_streams integer CHECK (max_concurrent_streams > 0);
