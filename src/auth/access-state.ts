// Decides, per request, whether a verified credential is still good: not logged out, not older
// than the user's token_version, user not disabled, key not revoked. The answers are cached in the
// shared store for a few seconds (one round trip per request, no database query); when the store
// is unreachable the checks read PostgreSQL instead — they never silently pass.
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import { BoundedMap } from '../platform/bounded-map.js';
import type { StoredValuesPrecondition } from '../platform/admission.js';
import type { AccessTokenClaims } from './access-tokens.js';
import type { ApiKeysRepository } from './api-keys-repository.js';
import type { LimitOverrides, UsersRepository } from './users-repository.js';
import { isWellFormedApiKey, sha256Hex } from './secrets.js';

/** How long a user's or key's state may be served from the store before PostgreSQL is asked again. */
const stateTtlMs = 5000;
/** Keys whose owner this process remembers; past this, the oldest is forgotten. */
const keyOwnersLimit = 10_000;

interface UserState {
  version: number;
  status: 'active' | 'disabled';
  role: 'user' | 'admin';
  limits: LimitOverrides;
}

interface ApiKeyState {
  id: string;
  userId: string;
  expiresAt: number | null;
  revoked: boolean;
}

export interface AccessGranted {
  userId: string;
  role: 'user' | 'admin';
  /** The user's own limits (null fields: the role's default), cached like the rest of the state. */
  limits: LimitOverrides;
}

/**
 * A credential this process judged valid, and the raw store values it judged: while the store
 * still holds exactly those, the judgment stands. Generation requests skip the lookup and let the
 * admission script confirm the values in the same round trip (see StoredValuesPrecondition).
 */
export interface JudgedAccess {
  granted: AccessGranted;
  apiKeyId: string | null;
  precondition: StoredValuesPrecondition;
  /** When the credential itself expires (an API key's expiry), in ms since the epoch. */
  validUntil: number | null;
}

/** Credentials judged valid that this process remembers; past this, the oldest is forgotten. */
const judgedLimit = 10_000;

const keys = {
  deniedToken: (tokenId: string) => `auth:denied:${tokenId}`,
  user: (userId: string) => `auth:user:v2:${userId}`,
  session: (sessionId: string) => `auth:session:${sessionId}`,
  apiKey: (keyHash: string) => `auth:key:${keyHash}`,
  /** Bumped by every change of the entry, before the entry is dropped or overwritten (see publishChange). */
  changes: (entryKey: string) => `${entryKey}:changes`,
};

/** Longer than any read of PostgreSQL can take, so a reader's marker cannot expire and come back equal. */
const changeMarkerTtlMs = 10 * 60 * 1000;

export function createAccessState(options: {
  store: KeyValueStore;
  users: UsersRepository;
  apiKeys: ApiKeysRepository;
  logger: Logger;
  accessTtlSeconds: number;
  onStoreFailure?: () => void;
  /** Tells every instance of a change, returning once none still answers from what it held before (see change-feed.ts). */
  announceChange?: ((message: string) => Promise<void>) | null;
}) {
  const { store, users, apiKeys, logger } = options;

  function storeFailed(error: unknown): void {
    options.onStoreFailure?.();
    logger.warn({ err: error }, 'store unreachable: access checks read PostgreSQL');
  }

  /**
   * Fills cache entries from a PostgreSQL read, without making the request wait — unless a change
   * was published since the read began (its marker moved): then the read may predate the change,
   * and writing it back would serve the old state for the entry's lifetime. A failed write only
   * costs a later miss.
   */
  function fillCache(entries: Array<{ key: string; value: string; marker: string | null }>): void {
    for (const entry of entries) {
      store.setUnlessChanged({ key: entry.key, value: entry.value, ttlMs: stateTtlMs, markerKey: keys.changes(entry.key), marker: entry.marker }).catch(() => undefined);
    }
  }

  /** The change markers of entries about to be read from PostgreSQL; null when the store is not answering (nothing is filled then). */
  async function markersBeforeRead(entryKeys: string[]): Promise<Array<string | null> | null> {
    try {
      return await store.getMany(entryKeys.map(keys.changes));
    } catch {
      return null;
    }
  }

  const judged = new BoundedMap<string, JudgedAccess>(judgedLimit);
  function rememberJudgment(credentialId: string, judgment: JudgedAccess | null): void {
    // Deleted first, so a renewed judgment counts as the newest and is the last to be forgotten.
    judged.delete(credentialId);
    if (judgment !== null) judged.set(credentialId, judgment);
  }

  /**
   * Concurrent misses for the same state share one PostgreSQL query: when cached entries expire
   * (or Redis stops answering) in the middle of a burst, it costs one read per user, not one per request.
   */
  const loading = new Map<string, Promise<unknown>>();
  function loadOnce<T>(key: string, load: () => Promise<T>): Promise<T> {
    const running = loading.get(key) as Promise<T> | undefined;
    if (running !== undefined) return running;
    const started = load().finally(() => loading.delete(key));
    loading.set(key, started);
    return started;
  }

  /**
   * A user's (and a session's) state from PostgreSQL, cached as read if nothing changed meanwhile.
   * `fill` is false when the store just failed: it is not asked again (a slow store would make the
   * read wait for a second timeout), and nothing is cached.
   */
  function loadAccessState(userId: string, sessionId: string | null, fill: boolean) {
    return loadOnce(`state:${userId}:${sessionId ?? ''}`, async () => {
      const entryKeys = sessionId === null ? [keys.user(userId)] : [keys.user(userId), keys.session(sessionId)];
      const markers = fill ? await markersBeforeRead(entryKeys) : null;
      const state = await readAccessState(userId, sessionId);
      if (state === null) return null;
      const userValue = JSON.stringify(state.user);
      const sessionValue = state.sessionActive ? 'active' : 'revoked';
      if (markers !== null) {
        fillCache([
          { key: keys.user(userId), value: userValue, marker: markers[0] ?? null },
          ...(sessionId === null ? [] : [{ key: keys.session(sessionId), value: sessionValue, marker: markers[1] ?? null }]),
        ]);
      }
      return { ...state, userValue, sessionValue };
    });
  }

  /** An API key's state from PostgreSQL, cached as read if nothing changed meanwhile; null for an unknown key. */
  function loadApiKey(keyHash: string, fill: boolean) {
    return loadOnce(`key:${keyHash}`, async () => {
      const markers = fill ? await markersBeforeRead([keys.apiKey(keyHash)]) : null;
      const record = await apiKeys.findByHash(keyHash);
      if (record === undefined) return null;
      const keyState: ApiKeyState = { id: record.id, userId: record.user_id, expiresAt: record.expires_at?.getTime() ?? null, revoked: record.revoked_at !== null };
      const keyValue = JSON.stringify(keyState);
      if (markers !== null) fillCache([{ key: keys.apiKey(keyHash), value: keyValue, marker: markers[0] ?? null }]);
      return { keyState, keyValue };
    });
  }

  async function readAccessState(userId: string, sessionId: string | null) {
    const row = await users.accessState(userId, sessionId);
    if (row === undefined) return null;
    const user: UserState = {
      version: row.token_version,
      status: row.status,
      role: row.role,
      limits: {
        rate_limit_requests: row.rate_limit_requests,
        rate_limit_window_seconds: row.rate_limit_window_seconds,
        token_quota_per_minute: row.token_quota_per_minute,
        token_quota_per_day: row.token_quota_per_day,
        max_concurrent_streams: row.max_concurrent_streams,
      },
    };
    const sessionActive = row.session_id !== null && row.revoked_at === null && (row.expires_at?.getTime() ?? 0) > Date.now();
    return { user, sessionActive };
  }

  function judgeUser(user: UserState | null, tokenVersion: number | null): UserState {
    if (user === null || user.status !== 'active') throw new GatewayError('invalid_token', 'Credentials are no longer valid');
    if (tokenVersion !== null && user.version !== tokenVersion) throw new GatewayError('invalid_token', 'Access token has been revoked');
    return user;
  }

  async function checkAccessToken(claims: AccessTokenClaims): Promise<AccessGranted> {
    const credentialId = `token:${claims.tokenId}`;
    // Forgotten until judged valid again: a failure below leaves no judgment to reuse.
    rememberJudgment(credentialId, null);
    let cached: Array<string | null>;
    try {
      cached = await store.getMany([keys.deniedToken(claims.tokenId), keys.user(claims.userId), keys.session(claims.sessionId)]);
    } catch (error) {
      storeFailed(error);
      const state = await loadAccessState(claims.userId, claims.sessionId, false);
      if (state === null || !state.sessionActive) throw new GatewayError('invalid_token', 'Access token has been revoked');
      const user = judgeUser(state.user, claims.tokenVersion);
      return { userId: claims.userId, role: user.role, limits: user.limits };
    }
    const [denied, cachedUser, cachedSession] = cached;
    if (denied !== null && denied !== undefined) throw new GatewayError('invalid_token', 'Access token has been revoked');
    let userValue = cachedUser ?? null;
    let sessionValue = cachedSession ?? null;
    let user = userValue === null ? null : (JSON.parse(userValue) as UserState);
    let sessionActive = sessionValue === null ? null : sessionValue === 'active';
    if (user === null || sessionActive === null) {
      const state = await loadAccessState(claims.userId, claims.sessionId, true);
      if (state === null) throw new GatewayError('invalid_token', 'Credentials are no longer valid');
      user = state.user;
      sessionActive = state.sessionActive;
      userValue = state.userValue;
      sessionValue = state.sessionValue;
    }
    if (!sessionActive) throw new GatewayError('invalid_token', 'Access token has been revoked');
    const judgedUser = judgeUser(user, claims.tokenVersion);
    const granted = { userId: claims.userId, role: judgedUser.role, limits: judgedUser.limits };
    rememberJudgment(credentialId, {
      granted,
      apiKeyId: null,
      precondition: { keys: [keys.deniedToken(claims.tokenId), keys.user(claims.userId), keys.session(claims.sessionId)], values: [null, userValue, sessionValue] },
      validUntil: null,
    });
    return granted;
  }

  /** The earlier judgment of this access token, if this process made one; nothing is asked of the store. */
  function judgedAccessToken(claims: AccessTokenClaims): JudgedAccess | null {
    return judged.get(`token:${claims.tokenId}`) ?? null;
  }

  /** The earlier judgment of this API key, if this process made one and the key has not expired since. */
  function judgedApiKey(key: string): JudgedAccess | null {
    if (!isWellFormedApiKey(key)) return null;
    const judgment = judged.get(`key:${sha256Hex(key)}`);
    if (judgment === undefined || (judgment.validUntil !== null && judgment.validUntil <= Date.now())) return null;
    return judgment;
  }

  /**
   * A key's owner never changes, so this process remembers it (by the key's hash): from the second
   * request on, the key's state and its owner's state are read in one round trip. Whether the key
   * is revoked, and the owner's status, still come from the store or PostgreSQL every time.
   */
  const keyOwners = new BoundedMap<string, string>(keyOwnersLimit);

  async function checkApiKey(key: string): Promise<AccessGranted & { apiKeyId: string }> {
    // Built only when needed: an Error captures a stack trace, which is not free on every request.
    const invalid = () => new GatewayError('invalid_api_key', 'API key is invalid or revoked');
    if (!isWellFormedApiKey(key)) throw invalid();
    const keyHash = sha256Hex(key);
    const knownOwner = keyOwners.get(keyHash);
    let storeWorks = true;
    const credentialId = `key:${keyHash}`;
    // Forgotten until judged valid again: a failure below leaves no judgment to reuse.
    rememberJudgment(credentialId, null);
    let keyValue: string | null = null;
    let userValue: string | null = null;
    try {
      [keyValue = null, userValue = null] = await store.getMany(knownOwner === undefined ? [keys.apiKey(keyHash)] : [keys.apiKey(keyHash), keys.user(knownOwner)]);
    } catch (error) {
      storeFailed(error);
      storeWorks = false;
    }
    let keyState = keyValue === null ? null : (JSON.parse(keyValue) as ApiKeyState);
    if (keyState === null) {
      const loaded = await loadApiKey(keyHash, storeWorks);
      if (loaded === null) throw invalid();
      keyState = loaded.keyState;
      keyValue = loaded.keyValue;
    }
    if (keyState.revoked || (keyState.expiresAt !== null && keyState.expiresAt <= Date.now())) throw invalid();
    if (knownOwner !== keyState.userId) {
      userValue = null;
      keyOwners.set(keyHash, keyState.userId);
      if (storeWorks) {
        try {
          [userValue = null] = await store.getMany([keys.user(keyState.userId)]);
        } catch (error) {
          storeFailed(error);
          storeWorks = false;
        }
      }
    }
    let user = userValue === null ? null : (JSON.parse(userValue) as UserState);
    if (user === null) {
      const state = await loadAccessState(keyState.userId, null, storeWorks);
      if (state === null) throw invalid();
      user = state.user;
      userValue = state.userValue;
    }
    if (user.status !== 'active') throw invalid();
    const granted = { userId: keyState.userId, role: user.role, limits: user.limits };
    if (storeWorks) {
      rememberJudgment(credentialId, {
        granted,
        apiKeyId: keyState.id,
        precondition: { keys: [keys.apiKey(keyHash), keys.user(keyState.userId)], values: [keyValue, userValue] },
        validUntil: keyState.expiresAt,
      });
    }
    return { ...granted, apiKeyId: keyState.id };
  }

  /**
   * Called after PostgreSQL changed: drops or overwrites the cached state at once, so every
   * instance sees the change on its next request. Failures are logged; the cache entries expire
   * within seconds anyway, and revoked sessions are also checked in PostgreSQL.
   */
  async function publishChange(change: {
    deniedToken?: { tokenId: string; expiresAt: number };
    userId?: string;
    revokedSessionIds?: string[];
    apiKeyHashes?: string[];
  }): Promise<void> {
    const revokedTtlMs = (options.accessTtlSeconds + 60) * 1000;
    const writes: Array<Promise<void>> = [];
    /** The cache entries this change touches: what a judgment read, and so what the announcement names. */
    const changedEntries = [
      ...(change.deniedToken === undefined ? [] : [keys.deniedToken(change.deniedToken.tokenId)]),
      ...(change.userId === undefined ? [] : [keys.user(change.userId)]),
      ...(change.revokedSessionIds ?? []).map(keys.session),
      ...(change.apiKeyHashes ?? []).map(keys.apiKey),
    ];
    if (change.deniedToken !== undefined) {
      const ttlMs = Math.max(1000, change.deniedToken.expiresAt * 1000 - Date.now() + 60_000);
      writes.push(store.set(keys.deniedToken(change.deniedToken.tokenId), '1', { ttlMs }));
    }
    // The marker first, then the entry: a read that began before the change can no longer fill the
    // entry once the marker moved, and one that filled it before is dropped or overwritten here.
    const afterMarker = async (entryKey: string, write: () => Promise<void>) => {
      try {
        await store.increment(keys.changes(entryKey), { ttlMs: changeMarkerTtlMs });
      } finally {
        await write();
      }
    };
    if (change.userId !== undefined) {
      const entry = keys.user(change.userId);
      writes.push(afterMarker(entry, () => store.delete(entry)));
    }
    for (const sessionId of change.revokedSessionIds ?? []) {
      const entry = keys.session(sessionId);
      writes.push(afterMarker(entry, () => store.set(entry, 'revoked', { ttlMs: revokedTtlMs })));
    }
    for (const keyHash of change.apiKeyHashes ?? []) {
      const entry = keys.apiKey(keyHash);
      writes.push(afterMarker(entry, () => store.delete(entry)));
    }
    const results = await Promise.allSettled(writes);
    // After the writes: an admission Redis runs from now on finds the new state, and any instance
    // holding a prepaid admission judged on a changed entry drops it before this returns.
    if (options.announceChange != null) results.push(...(await Promise.allSettled([options.announceChange(changedEntries.join('\n'))])));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) storeFailed(failed.reason);
  }

  return { checkAccessToken, checkApiKey, judgedAccessToken, judgedApiKey, publishChange };
}

export type AccessState = ReturnType<typeof createAccessState>;
