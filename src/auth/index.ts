// Wires the accounts feature: repositories, services, the authenticator other features use,
// and the /api/auth, /api/keys and /api/admin routes.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Database } from '../platform/database.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
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

export async function registerAccounts(app: FastifyInstance, dependencies: { config: Config; db: Database; store: KeyValueStore; logger: Logger; onStoreFailure?: () => void }) {
  const { config, db, store, logger } = dependencies;
  const users = createUsersRepository(db);
  const sessions = createSessionsRepository(db);
  const apiKeys = createApiKeysRepository(db);
  const accessTokens = createAccessTokens({ jwt: config.jwt });
  const accessState = createAccessState({ store, users, apiKeys, logger, accessTtlSeconds: config.jwt.accessTtlSeconds, ...(dependencies.onStoreFailure ? { onStoreFailure: dependencies.onStoreFailure } : {}) });
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
  const authenticator = createAuthenticator({ accessTokens, accessState, onApiKeyUsed: (id) => apiKeysService.recordUse(id) });
  const adminService = createAdminService({ users, accountService });

  app.decorateRequest('principal', null);
  app.addHook('onClose', async () => {
    await apiKeysService.close();
    await loginThrottle.close();
  });

  await ensureBootstrapAdmin({ admin: config.bootstrapAdmin, users, accountService, logger });
  await app.register(authRoutes, { prefix: '/api/auth', accountService, authenticator });
  await app.register(apiKeysRoutes, { prefix: '/api/keys', apiKeysService, authenticator });
  await app.register(adminRoutes, { prefix: '/api/admin', adminService, authenticator });

  return { authenticator, accountService, apiKeysService, users };
}
