ALTER TABLE users
  DROP COLUMN rate_limit_requests,
  DROP COLUMN rate_limit_window_seconds,
  DROP COLUMN token_quota_per_minute,
  DROP COLUMN token_quota_per_day,
  DROP COLUMN max_concurrent_streams;
