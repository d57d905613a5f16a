// Turns database records into the API's JSON shapes (snake_case, ISO timestamps, no secrets).
import type { ApiKeyRecord } from './api-keys-repository.js';
import type { ApiKeyView, SessionView, UserView } from './schemas.js';
import type { SessionRecord } from './sessions-repository.js';
import type { UserRecord } from './users-repository.js';

export function toUserView(user: UserRecord): UserView {
  return {
    id: user.id,
    email: user.email,
    display_name: user.display_name,
    role: user.role,
    status: user.status,
    created_at: user.created_at.toISOString(),
  };
}

export function toSessionView(session: SessionRecord, currentSessionId: string | null): SessionView {
  return {
    id: session.id,
    created_at: session.created_at.toISOString(),
    last_used_at: session.last_used_at.toISOString(),
    expires_at: session.expires_at.toISOString(),
    user_agent: session.user_agent,
    ip: session.ip,
    current: session.id === currentSessionId,
  };
}

export function toApiKeyView(key: ApiKeyRecord): ApiKeyView {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    created_at: key.created_at.toISOString(),
    last_used_at: key.last_used_at?.toISOString() ?? null,
    expires_at: key.expires_at?.toISOString() ?? null,
  };
}
