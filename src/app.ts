// Builds the gateway as a Fastify instance, the same way for the process and for tests:
// platform (logging, errors, security, docs, metrics), then the features.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { openDatabase, type DatabaseHandle } from './platform/database.js';
import { createMigrationRunner } from './platform/migrations.js';
import { openStore } from './platform/store.js';
import type { KeyValueStore } from './platform/key-value-store.js';
import { createHttpClient, type HttpClient } from './platform/http-client.js';
import { createMetrics, type Metrics } from './platform/metrics.js';
import { createLogger, requestIdFor } from './platform/logging.js';
import { handleClientError, installErrorHandlers } from './platform/error-handler.js';
import { installRequestHooks } from './platform/request-hooks.js';
import { registerHttpSecurity } from './platform/http-security.js';
import { registerApiDocs } from './platform/api-docs.js';
import { validatorCompiler } from './platform/validation.js';
import { createHealthService } from './health/service.js';
import { healthRoutes } from './health/routes.js';
import { createUpstreams } from './upstream/index.js';
import { upstreamsAdminRoutes } from './upstream/admin-routes.js';
import { registerAccounts } from './auth/index.js';
import { registerRelay } from './chat/index.js';
import { createLimitsService } from './limits/limits-service.js';
import { accessChanges, startChangeFeed } from './platform/change-feed.js';
import { usageRoutes } from './usage/routes.js';

export interface AppDependencies {
  database: DatabaseHandle;
  store: KeyValueStore;
  upstreamClient: HttpClient;
  logger: Logger;
  metrics: Metrics;
}

export type App = FastifyInstance;

declare module 'fastify' {
  interface FastifyInstance {
    /** Handles for operations and tests: the database, and a way to write queued usage now. */
    gateway: { database: DatabaseHandle; flushUsage(): Promise<void>; reloadUpstreams(): boolean };
  }
}

export interface BuildOptions {
  /**
   * Registers more routes on the same platform (errors, hooks, docs) before the app is sealed:
   * for embedding the gateway in a larger service, and for tests that exercise the platform.
   */
  extend?: (app: App) => Promise<void>;
}

/**
 * Builds the app. Dependencies not provided are opened from the config and closed with the app;
 * provided ones belong to the caller (tests share or break them on purpose).
 */
export async function buildApp(config: Config, provided: Partial<AppDependencies> = {}, options: BuildOptions = {}): Promise<App> {
  const owned: Array<{ close(): Promise<void> }> = [];
  try {
    return await assembleApp({ config, provided, owned, options });
  } catch (error) {
    // A failed start (a migration, a plugin) must not leave pools or sockets open behind it.
    await closeAll(owned);
    throw error;
  }
}

async function assembleApp(parts: {
  config: Config;
  provided: Partial<AppDependencies>;
  owned: Array<{ close(): Promise<void> }>;
  options: BuildOptions;
}): Promise<App> {
  const { config, provided, owned, options } = parts;
  const logger = provided.logger ?? createLogger({ config });
  const database = provided.database ?? remember(owned, await openDatabase({ database: config.database, dataDirectory: config.dataDirectory }));
  const store = provided.store ?? remember(owned, await openStore({ redis: config.redis }));
  const upstreamClient = provided.upstreamClient ?? remember(owned, createHttpClient({ connectTimeoutMs: config.relay.connectTimeoutMs, keepAliveTimeoutMs: config.relay.keepAliveTimeoutMs }));
  const metrics = provided.metrics ?? createMetrics();

  if (config.database.autoMigrate) {
    const applied = await createMigrationRunner({ database }).latest();
    if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
  }

  // Typed as Fastify's logger interface so the instance's type does not carry pino's generics.
  const loggerInstance: FastifyBaseLogger = logger;
  const app = Fastify({
    loggerInstance,
    // One access-log line per request, written by our onResponse hook, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestIdFor,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.http.trustedProxies.length > 0 ? config.http.trustedProxies : false,
    // Unknown fields are refused, not silently dropped, where a schema forbids them.
    return503OnClosing: true,
    clientErrorHandler: handleClientError,
  }).withTypeProvider<TypeBoxTypeProvider>();

  let shuttingDown = false;
  app.addHook('preClose', (done) => {
    shuttingDown = true;
    done();
  });
  // Node closes only the connections idle when close() starts; a keep-alive connection whose
  // request finishes later would hold shutdown until its timeout. So while shutting down, answers
  // say `connection: close` and each finished request closes the connections now idle.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (shuttingDown) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', (_request, _reply, done) => {
    if (shuttingDown) setImmediate(() => app.server.closeIdleConnections());
    done();
  });
  app.addHook('onClose', async () => {
    await closeAll(owned, (error) => logger.error({ err: error }, 'closing a dependency failed'));
  });

  app.setValidatorCompiler(validatorCompiler);
  // The API speaks JSON only: a text/plain body is refused (415), not parsed into a string.
  app.removeContentTypeParser('text/plain');
  installErrorHandlers(app);
  installRequestHooks(app, { metrics, allowedHosts: config.http.allowedHosts });
  await registerHttpSecurity(app, { corsOrigins: config.http.corsOrigins, docsEnabled: config.http.docsEnabled });
  if (config.http.docsEnabled) await registerApiDocs(app);

  const upstreams = createUpstreams({ config, client: upstreamClient, registry: metrics.registry, logger });
  upstreams.monitor.start();
  app.addHook('onClose', () => {
    upstreams.close();
    return Promise.resolve();
  });
  const healthService = createHealthService({
    database,
    store,
    upstreamClient,
    router: upstreams.router,
    timeoutMs: config.vllm.healthTimeoutMs,
    isShuttingDown: () => shuttingDown,
    onProblem: (problem) => logger.warn(problem, 'dependency unhealthy'),
  });
  await app.register(healthRoutes, { healthService, metricsRegistry: metrics.registry });
  // Changes of credentials and users, seen by this instance in time to admit callers from memory.
  const changeFeed =
    store.kind === 'redis' && config.limits.prepaidAdmissions ? remember(owned, await startChangeFeed({ store, ...accessChanges })) : null;
  const limits = createLimitsService({ config: config.limits, store, registry: metrics.registry, logger, changeFeed });
  app.addHook('onClose', () => limits.close());
  const accounts = await registerAccounts(app, {
    config,
    db: database.db,
    store,
    logger,
    authRateLimit: async (request, reply) => {
      reply.headers(await limits.admitAuth(request.ip));
    },
  });
  const relay = await registerRelay(app, { config, db: database.db, store, upstreams, metrics, logger, authenticator: accounts.authenticator, limits });
  await app.register(upstreamsAdminRoutes, { prefix: '/api/admin', router: upstreams.router, authenticator: accounts.authenticator });
  await app.register(usageRoutes, { prefix: '/api', limits, authenticator: accounts.authenticator, usageRepository: relay.usageRepository });
  app.decorate('gateway', { database, flushUsage: () => relay.usage.flush(), reloadUpstreams: () => upstreams.reload() });

  if (options.extend !== undefined) await options.extend(app);
  await app.ready();
  return app;
}

function remember<T extends { close(): Promise<void> }>(owned: Array<{ close(): Promise<void> }>, dependency: T): T {
  owned.push(dependency);
  return dependency;
}

async function closeAll(owned: Array<{ close(): Promise<void> }>, onError: (error: unknown) => void = () => undefined): Promise<void> {
  for (const dependency of owned.reverse()) {
    await dependency.close().catch(onError);
  }
  owned.length = 0;
}
