// Wires the accounts feature: repositories, services, the authenticator other features use,
// and the /api/auth, /api/keys and /api/admin routes.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Database } from '../platform/database.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import { accessChanges, announceChange } from '../platform/change-feed.js';
import { createAdminService } from '../admin/service.js';
import { adminRoutes } from '../admin/routes.js';
import { createAccessTokens } from './access-tokens.js';
import { createAccessState } from './access-state.js';
import { createApiKeysRepository } from './api-keys-repository.js';
import { apiKeysRoutes } from './api-keys-routes.js';
import { createApiKeysService } from './api-keys-service.js';
import { createAuthenticator } from './authenticate.js';
import { ensureBootstrapAdmin } from './bootstrap-admin.js';
import { createLoginThrottle } from './login-throttle.js';
import { authRoutes } from './routes.js';
import { createAccountService } from './service.js';
import { createSessionsRepository } from './sessions-repository.js';
import { createUsersRepository } from './users-repository.js';

/** The accounts services without HTTP: used by the app and by the CLI. */
export function createAccounts(dependencies: { config: Config; db: Database; store: KeyValueStore; logger: Logger; onStoreFailure?: () => void }) {
  const { config, db, store, logger } = dependencies;
  const users = createUsersRepository(db);
  const sessions = createSessionsRepository(db);
  const apiKeys = createApiKeysRepository(db);
  const accessTokens = createAccessTokens({ jwt: config.jwt });
  const accessState = createAccessState({
    store,
    users,
    apiKeys,
    logger,
    accessTtlSeconds: config.jwt.accessTtlSeconds,
    // Always with Redis, whether this process admits from memory or not: others may.
    announceChange: store.kind === 'redis' ? (message) => announceChange(store, accessChanges, message) : null,
    ...(dependencies.onStoreFailure === undefined ? {} : { onStoreFailure: dependencies.onStoreFailure }),
  });
  const loginThrottle = createLoginThrottle({ store });
  const accountService = createAccountService({
    users,
    sessions,
    accessTokens,
    accessState,
    loginThrottle,
    refreshTtlSeconds: config.jwt.refreshTtlSeconds,
    refreshReuseGraceSeconds: config.jwt.refreshReuseGraceSeconds,
  });
  const apiKeysService = createApiKeysService({ apiKeys, accessState, logger });
  const adminService = createAdminService({ users, accountService });
  return {
    users,
    accessTokens,
    accessState,
    accountService,
    apiKeysService,
    adminService,
    async close() {
      await apiKeysService.close();
      await loginThrottle.close();
    },
  };
}

export type Accounts = ReturnType<typeof createAccounts>;

export async function registerAccounts(
  app: FastifyInstance,
  dependencies: Parameters<typeof createAccounts>[0] & { authRateLimit: (request: FastifyRequest, reply: FastifyReply) => Promise<void> },
) {
  const accounts = createAccounts(dependencies);
  const { accountService, apiKeysService, adminService } = accounts;
  const authenticator = createAuthenticator({
    accessTokens: accounts.accessTokens,
    accessState: accounts.accessState,
    onApiKeyUsed: (id) => apiKeysService.recordUse(id),
  });

  app.decorateRequest('principal', null);
  app.decorateRequest('accessPrecondition', null);
  app.addHook('onClose', () => accounts.close());

  await ensureBootstrapAdmin({ admin: dependencies.config.bootstrapAdmin, users: accounts.users, accountService, logger: dependencies.logger });
  await app.register(authRoutes, { prefix: '/api/auth', accountService, authenticator, authRateLimit: dependencies.authRateLimit });
  await app.register(apiKeysRoutes, { prefix: '/api/keys', apiKeysService, authenticator });
  await app.register(adminRoutes, { prefix: '/api/admin', adminService, authenticator, limitsConfig: dependencies.config.limits });

  return { ...accounts, authenticator };
}
