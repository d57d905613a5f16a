// Concurrent credential checks that miss the store's cache share one PostgreSQL read: one
// `apiKeys.findByHash` per key hash, one `users.accessState` per user + session, however many
// requests arrive together. The access state under test is the real one, over the real
// repositories (on a real database: PGlite, and PostgreSQL when configured) and a real store
// (in-process, and Redis when configured) whose cache starts empty; the repositories are only
// wrapped in pass-through counters. Once the shared read settles, the next miss reads again.
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createAccessState, type AccessState } from '../../src/auth/access-state.js';
import { createAccessTokens, type AccessTokenClaims } from '../../src/auth/access-tokens.js';
import { createApiKeysRepository, type ApiKeyRecord, type ApiKeysRepository } from '../../src/auth/api-keys-repository.js';
import { sha256Hex } from '../../src/auth/secrets.js';
import { createUsersRepository, type UsersRepository } from '../../src/auth/users-repository.js';
import type { Config } from '../../src/config.js';
import { GatewayError } from '../../src/errors.js';
import type { DatabaseHandle } from '../../src/platform/database.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createLogger } from '../../src/platform/logging.js';
import { bearer, createApiKey, login, randomIp, signUp } from '../helpers/auth-client.js';
import { hasRealServices, type Backend } from '../helpers/environment.js';
import { openAppWithStore, type AppWithStore, type StoreKind } from '../helpers/access-state-fixtures.js';

const CONCURRENT = 50;


interface Combination {
  database: Backend;
  store: StoreKind;
}

/** Embedded PostgreSQL + in-process store always; real PostgreSQL with each store when configured. */
const combinations: Combination[] = [
  { database: 'embedded', store: 'memory' },
  ...(hasRealServices ? [{ database: 'real' as const, store: 'memory' as const }, { database: 'real' as const, store: 'redis' as const }] : []),
];

/** The store's cache keys for a user's, a session's and a key's state (see access-state.ts). */
const cacheKeys = {
  user: (userId: string) => `auth:user:v2:${userId}`,
  session: (sessionId: string) => `auth:session:${sessionId}`,
  apiKey: (key: string) => `auth:key:${sha256Hex(key)}`,
};

/**
 * The real store, watched: reads that have answered are counted (so a held database read can wait
 * until every concurrent caller has had its cache answer), and the fire-and-forget cache writes the
 * access state makes can be awaited before a test removes the entries.
 */
function watchStore(store: KeyValueStore) {
  let answeredReads = 0;
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const pendingWrites = new Set<Promise<unknown>>();
  function track<T>(write: Promise<T>): Promise<T> {
    pendingWrites.add(write);
    void write.finally(() => pendingWrites.delete(write)).catch(() => undefined);
    return write;
  }
  const watched: KeyValueStore = Object.assign(Object.create(store) as KeyValueStore, {
    kind: store.kind,
    async getMany(keys: string[]) {
      const values = await store.getMany(keys);
      answeredReads += 1;
      for (const waiter of [...waiters]) {
        if (answeredReads >= waiter.count) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
      return values;
    },
    set(key: string, value: string, options?: { ttlMs?: number }) {
      return track(store.set(key, value, options));
    },
    setUnlessChanged(entry: Parameters<KeyValueStore['setUnlessChanged']>[0]) {
      return track(store.setUnlessChanged(entry));
    },
  });
  return {
    store: watched,
    get answeredReads() {
      return answeredReads;
    },
    /** Resolves once `count` reads have answered (at the latest after 5 s, so a broken expectation fails instead of hanging). */
    readsAnswered(count: number): Promise<void> {
      if (answeredReads >= count) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const waiter = { count, resolve };
        waiters.push(waiter);
        setTimeout(() => {
          const index = waiters.indexOf(waiter);
          if (index !== -1) waiters.splice(index, 1);
          resolve();
        }, 5000).unref();
      });
    },
    async writesSettled(): Promise<void> {
      while (pendingWrites.size > 0) await Promise.allSettled([...pendingWrites]);
    },
  };
}

type StoreWatch = ReturnType<typeof watchStore>;

/**
 * Pass-through counters around the real repositories. Each call to a repository method is counted
 * and delegated unchanged, but not before `hold()` resolves: the test makes it wait until every
 * concurrent caller's cache read has answered, so "concurrent" does not depend on how fast the
 * database happens to be. `failNext` makes the next call reject (after the hold) instead of reading.
 */
function countingRepositories(realUsers: UsersRepository, realApiKeys: ApiKeysRepository) {
  const counts = { accessState: 0, findByHash: 0 };
  const control = {
    hold: (): Promise<void> => Promise.resolve(),
    failNext: { accessState: null as Error | null, findByHash: null as Error | null },
  };

  async function delegate<T>(method: 'accessState' | 'findByHash', read: () => Promise<T>): Promise<T> {
    counts[method] += 1;
    await control.hold();
    const failure = control.failNext[method];
    if (failure !== null) {
      control.failNext[method] = null;
      throw failure;
    }
    return read();
  }

  const users: UsersRepository = {
    ...realUsers,
    accessState: (userId, sessionId) => delegate('accessState', () => realUsers.accessState(userId, sessionId)),
  };
  const apiKeys: ApiKeysRepository = {
    ...realApiKeys,
    findByHash: (keyHash): Promise<ApiKeyRecord | undefined> => delegate('findByHash', () => realApiKeys.findByHash(keyHash)),
  };
  return { users, apiKeys, counts, control };
}

type Counting = ReturnType<typeof countingRepositories>;

async function settleAll<T>(calls: Array<Promise<T>>) {
  const results = await Promise.allSettled(calls);
  return {
    values: results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])),
    reasons: results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : [])),
  };
}

describe.each(combinations)('concurrent cache misses share one database read (database $database, store $store)', ({ database: databaseBackend, store: storeKind }) => {
  let config: Config;
  let database: DatabaseHandle;
  let app: App;
  let store: KeyValueStore;
  let fixture: AppWithStore | undefined;
  let accessTokens: ReturnType<typeof createAccessTokens>;

  beforeAll(async () => {
    // The app creates users, sessions and keys through its routes; the access states under test are
    // built beside it on the same database, with a store of their own.
    fixture = await openAppWithStore({ database: databaseBackend, store: storeKind, name: 'single-read' });
    ({ config, database, app, store } = fixture);
    accessTokens = createAccessTokens({ jwt: config.jwt });
  });

  afterAll(async () => {
    await fixture?.close();
  });

  let watch: StoreWatch;
  let counting: Counting;
  let accessState: AccessState;

  beforeEach(() => {
    // A new access state per test: nothing judged, no key owners remembered, nothing in flight.
    watch = watchStore(store);
    counting = countingRepositories(createUsersRepository(database.db), createApiKeysRepository(database.db));
    accessState = createAccessState({
      store: watch.store,
      users: counting.users,
      apiKeys: counting.apiKeys,
      logger: createLogger({ config }),
      accessTtlSeconds: config.jwt.accessTtlSeconds,
    });
  });

  /** Holds every repository call until `count` cache reads (counted from now) have answered, then one more turn of the event loop. */
  function holdUntilReadsAnswered(count: number): void {
    const base = watch.answeredReads;
    counting.control.hold = async () => {
      await watch.readsAnswered(base + count);
      await nextMacrotask();
    };
  }

  async function newKeyHolder(): Promise<{ userId: string; accessToken: string; apiKey: string; apiKeyId: string }> {
    const signedIn = await signUp(app, { remoteAddress: randomIp() });
    const key = await createApiKey(app, signedIn.tokens.access_token, 'single read');
    return { userId: signedIn.user.id, accessToken: signedIn.tokens.access_token, apiKey: key.key, apiKeyId: key.id };
  }

  async function removeCachedState(keys: string[]): Promise<void> {
    await watch.writesSettled();
    for (const key of keys) await store.delete(key);
    expect(await store.getMany(keys)).toEqual(keys.map(() => null));
  }

  function checkKeys(key: string, times: number) {
    return Array.from({ length: times }, () => accessState.checkApiKey(key));
  }

  function checkTokens(claims: AccessTokenClaims, times: number) {
    return Array.from({ length: times }, () => accessState.checkAccessToken(claims));
  }

  it(`${CONCURRENT} concurrent checks of one API key read the key once and its owner once, and all succeed`, async () => {
    const holder = await newKeyHolder();
    expect(await store.getMany([cacheKeys.apiKey(holder.apiKey), cacheKeys.user(holder.userId)])).toEqual([null, null]);
    // First the key's cache read of every caller (1 each), then the owner's (1 each).
    const base = watch.answeredReads;
    counting.control.hold = async () => {
      await watch.readsAnswered(base + (counting.counts.accessState === 0 ? CONCURRENT : 2 * CONCURRENT));
      await nextMacrotask();
    };

    const { values, reasons } = await settleAll(checkKeys(holder.apiKey, CONCURRENT));

    expect(reasons).toEqual([]);
    expect(values).toHaveLength(CONCURRENT);
    for (const granted of values) expect(granted).toMatchObject({ userId: holder.userId, apiKeyId: holder.apiKeyId, role: 'user' });
    expect(counting.counts).toEqual({ findByHash: 1, accessState: 1 });

    // Cached now: a later check reads no database at all.
    await watch.writesSettled();
    await expect(accessState.checkApiKey(holder.apiKey)).resolves.toMatchObject({ userId: holder.userId });
    expect(counting.counts).toEqual({ findByHash: 1, accessState: 1 });
  });

  it(`${CONCURRENT} concurrent checks of one access token read the user and session once, and all succeed`, async () => {
    const holder = await newKeyHolder();
    const claims = await accessTokens.verify(holder.accessToken);
    expect(claims.userId).toBe(holder.userId);
    holdUntilReadsAnswered(CONCURRENT);

    const { values, reasons } = await settleAll(checkTokens(claims, CONCURRENT));

    expect(reasons).toEqual([]);
    expect(values).toHaveLength(CONCURRENT);
    for (const granted of values) expect(granted).toMatchObject({ userId: holder.userId, role: 'user' });
    expect(counting.counts).toEqual({ findByHash: 0, accessState: 1 });
  });

  it('shares a read per session, not per user: a revoked session is judged on its own row', async () => {
    const holder = await signUp(app, { remoteAddress: randomIp() });
    const other = await login(app, { email: holder.email, password: holder.password, remoteAddress: randomIp() });
    const logout = await app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(other.access_token), payload: { refresh_token: other.refresh_token } });
    expect(logout.statusCode, logout.body).toBe(204);
    const active = await accessTokens.verify(holder.tokens.access_token);
    const revoked = await accessTokens.verify(other.access_token);
    expect(revoked.sessionId).not.toBe(active.sessionId);
    holdUntilReadsAnswered(CONCURRENT);

    const half = CONCURRENT / 2;
    const [onActive, onRevoked] = await Promise.all([settleAll(checkTokens(active, half)), settleAll(checkTokens(revoked, half))]);

    expect(onActive.reasons).toEqual([]);
    expect(onActive.values).toHaveLength(half);
    expect(onRevoked.values).toEqual([]);
    expect(onRevoked.reasons).toHaveLength(half);
    for (const reason of onRevoked.reasons) expect(reason).toMatchObject({ code: 'invalid_token' });
    expect(counting.counts.accessState).toBe(2);
  });

  it('reads again on a later miss: the shared read is not kept once it has finished', async () => {
    const holder = await newKeyHolder();
    holdUntilReadsAnswered(CONCURRENT);
    expect((await settleAll(checkKeys(holder.apiKey, CONCURRENT))).reasons).toEqual([]);
    expect(counting.counts).toEqual({ findByHash: 1, accessState: 1 });

    counting.control.hold = () => Promise.resolve();
    await removeCachedState([cacheKeys.apiKey(holder.apiKey), cacheKeys.user(holder.userId)]);
    await expect(accessState.checkApiKey(holder.apiKey)).resolves.toMatchObject({ userId: holder.userId, apiKeyId: holder.apiKeyId });
    expect(counting.counts).toEqual({ findByHash: 2, accessState: 2 });

    const claims = await accessTokens.verify(holder.accessToken);
    expect((await settleAll(checkTokens(claims, CONCURRENT))).reasons).toEqual([]);
    const afterTokens = counting.counts.accessState;
    expect(afterTokens).toBe(3);
    await removeCachedState([cacheKeys.user(holder.userId), cacheKeys.session(claims.sessionId)]);
    await expect(accessState.checkAccessToken(claims)).resolves.toMatchObject({ userId: holder.userId });
    expect(counting.counts.accessState).toBe(afterTokens + 1);
  });

  it('a revocation written to PostgreSQL is seen by the next miss, not hidden behind the finished read', async () => {
    const holder = await newKeyHolder();
    holdUntilReadsAnswered(CONCURRENT);
    expect((await settleAll(checkKeys(holder.apiKey, CONCURRENT))).reasons).toEqual([]);

    counting.control.hold = () => Promise.resolve();
    const revoke = await app.inject({ method: 'DELETE', url: `/api/keys/${holder.apiKeyId}`, headers: bearer(holder.accessToken) });
    expect(revoke.statusCode, revoke.body).toBeLessThan(300);
    await removeCachedState([cacheKeys.apiKey(holder.apiKey), cacheKeys.user(holder.userId)]);
    await expect(accessState.checkApiKey(holder.apiKey)).rejects.toMatchObject({ code: 'invalid_api_key' });
    expect(counting.counts.findByHash).toBe(2);
  });

  it('when the shared key read fails, every waiting check fails with it, and the next check reads again', async () => {
    const holder = await newKeyHolder();
    const failure = new Error('connect ECONNREFUSED 127.0.0.1:5432');
    counting.control.failNext.findByHash = failure;
    holdUntilReadsAnswered(CONCURRENT);

    const { values, reasons } = await settleAll(checkKeys(holder.apiKey, CONCURRENT));

    expect(values).toEqual([]);
    expect(reasons).toHaveLength(CONCURRENT);
    for (const reason of reasons) expect(reason).toBe(failure);
    expect(counting.counts).toEqual({ findByHash: 1, accessState: 0 });

    counting.control.hold = () => Promise.resolve();
    await expect(accessState.checkApiKey(holder.apiKey)).resolves.toMatchObject({ userId: holder.userId, apiKeyId: holder.apiKeyId });
    expect(counting.counts).toEqual({ findByHash: 2, accessState: 1 });
  });

  it('when the shared user + session read fails, every waiting check fails with it, and the next check reads again', async () => {
    const holder = await newKeyHolder();
    const claims = await accessTokens.verify(holder.accessToken);
    const failure = new Error('Connection terminated unexpectedly');
    counting.control.failNext.accessState = failure;
    holdUntilReadsAnswered(CONCURRENT);

    const { values, reasons } = await settleAll(checkTokens(claims, CONCURRENT));

    expect(values).toEqual([]);
    expect(reasons).toHaveLength(CONCURRENT);
    for (const reason of reasons) {
      expect(reason).toBe(failure);
      expect(reason).not.toBeInstanceOf(GatewayError);
    }
    expect(counting.counts.accessState).toBe(1);

    counting.control.hold = () => Promise.resolve();
    await expect(accessState.checkAccessToken(claims)).resolves.toMatchObject({ userId: holder.userId });
    expect(counting.counts.accessState).toBe(2);
  });
});
