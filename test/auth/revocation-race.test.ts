// A credential check that read PostgreSQL just before a change (a revoked key, a disabled user)
// must not put that old state back into the shared cache after the change was published: the
// instance publishing it bumps a marker first, and a cache fill whose marker moved is refused.
// Without that, every instance would keep accepting the revoked credential for the cache's lifetime.
// The access state under test is the real one, over the real repositories (PGlite, and PostgreSQL
// when configured) and a real store (in-process, and Redis when configured); the read is only held
// — after it has read — until the change is published.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createAccessState, type AccessState } from '../../src/auth/access-state.js';
import { createAccessTokens } from '../../src/auth/access-tokens.js';
import { createApiKeysRepository, type ApiKeysRepository } from '../../src/auth/api-keys-repository.js';
import { sha256Hex } from '../../src/auth/secrets.js';
import { createUsersRepository, type UsersRepository } from '../../src/auth/users-repository.js';
import type { Config } from '../../src/config.js';
import type { GatewayError } from '../../src/errors.js';
import type { DatabaseHandle } from '../../src/platform/database.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createLogger } from '../../src/platform/logging.js';
import { bearer, createApiKey, randomIp, signUp } from '../helpers/auth-client.js';
import { hasRealServices, type Backend } from '../helpers/environment.js';
import { openAppWithStore, type AppWithStore, type StoreKind } from '../helpers/access-state-fixtures.js';

const combinations: Array<{ database: Backend; store: StoreKind }> = [
  { database: 'embedded', store: 'memory' },
  ...(hasRealServices ? [{ database: 'real' as const, store: 'redis' as const }] : []),
];

/** A gate the held read waits at, after it has read. */
function gate() {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let reached: () => void = () => undefined;
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  return { open, opened, arrived, reached };
}

describe.each(combinations)('a change published during a credential read (database $database, store $store)', ({ database: databaseBackend, store: storeKind }) => {
  let config: Config;
  let database: DatabaseHandle;
  let app: App;
  let store: KeyValueStore;
  let fixture: AppWithStore | undefined;

  beforeAll(async () => {
    // The app creates users, sessions and keys through its routes; the access states under test are
    // built beside it on the same database, with a store of their own.
    fixture = await openAppWithStore({ database: databaseBackend, store: storeKind, name: 'revocation-race' });
    ({ config, database, app, store } = fixture);
  });

  afterAll(async () => {
    await fixture?.close();
  });

  /** Two instances on one store: `held` reads through repositories that pause after reading; `fresh` reads plainly. */
  function instances(hold: { apiKeys?: ReturnType<typeof gate>; users?: ReturnType<typeof gate> }) {
    const realUsers = createUsersRepository(database.db);
    const realApiKeys = createApiKeysRepository(database.db);
    const users: UsersRepository = {
      ...realUsers,
      accessState: async (userId, sessionId) => {
        const state = await realUsers.accessState(userId, sessionId);
        hold.users?.reached();
        await hold.users?.opened;
        return state;
      },
    };
    const apiKeys: ApiKeysRepository = {
      ...realApiKeys,
      findByHash: async (keyHash) => {
        const record = await realApiKeys.findByHash(keyHash);
        hold.apiKeys?.reached();
        await hold.apiKeys?.opened;
        return record;
      },
    };
    const make = (repositories: { users: UsersRepository; apiKeys: ApiKeysRepository }): AccessState =>
      createAccessState({ store, ...repositories, logger: createLogger({ config }), accessTtlSeconds: config.jwt.accessTtlSeconds });
    return { held: make({ users, apiKeys }), fresh: make({ users: realUsers, apiKeys: realApiKeys }) };
  }

  /** Lets the held check's fire-and-forget cache fill reach the store. */
  const fillsSettled = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('an API key revoked while another instance was reading it: the old state is not cached, the key is refused at once', async () => {
    const signedIn = await signUp(app, { remoteAddress: randomIp() });
    const key = await createApiKey(app, signedIn.tokens.access_token, 'race');
    const hold = gate();
    const { held, fresh } = instances({ apiKeys: hold });

    const racing = held.checkApiKey(key.key);
    await hold.arrived;
    // The revocation commits in PostgreSQL and is published (by whichever instance served it).
    const revoked = await app.inject({ method: 'DELETE', url: `/api/keys/${key.id}`, headers: bearer(signedIn.tokens.access_token) });
    expect(revoked.statusCode, revoked.body).toBeLessThan(300);
    await held.publishChange({ apiKeyHashes: [sha256Hex(key.key)] });
    hold.open();
    // That one request overlapped the revocation and may pass; what it read must not outlive it.
    await racing;
    await fillsSettled();

    expect(await store.get(`auth:key:${sha256Hex(key.key)}`)).toBeNull();
    await expect(fresh.checkApiKey(key.key)).rejects.toMatchObject({ code: 'invalid_api_key' } satisfies Partial<GatewayError>);
  });

  it('a user disabled while another instance was reading them: the old state is not cached, their token is refused at once', async () => {
    const signedIn = await signUp(app, { remoteAddress: randomIp() });
    const claims = await createAccessTokens({ jwt: config.jwt }).verify(signedIn.tokens.access_token);
    const hold = gate();
    const { held, fresh } = instances({ users: hold });

    const racing = held.checkAccessToken(claims);
    await hold.arrived;
    await sql`UPDATE users SET status = 'disabled' WHERE id = ${signedIn.user.id}`.execute(database.db);
    await held.publishChange({ userId: signedIn.user.id });
    hold.open();
    await racing;
    await fillsSettled();

    expect(await store.get(`auth:user:v2:${signedIn.user.id}`)).toBeNull();
    await expect(fresh.checkAccessToken(claims)).rejects.toMatchObject({ code: 'invalid_token' } satisfies Partial<GatewayError>);
  });

  it('with no change meanwhile, what was read is cached as before', async () => {
    const signedIn = await signUp(app, { remoteAddress: randomIp() });
    const key = await createApiKey(app, signedIn.tokens.access_token, 'no race');
    const { held } = instances({});
    await held.checkApiKey(key.key);
    await fillsSettled();
    expect(JSON.parse((await store.get(`auth:key:${sha256Hex(key.key)}`)) ?? 'null')).toMatchObject({ id: key.id, revoked: false });
    expect(JSON.parse((await store.get(`auth:user:v2:${signedIn.user.id}`)) ?? 'null')).toMatchObject({ status: 'active' });
  });
});
