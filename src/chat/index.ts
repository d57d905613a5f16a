// Wires the relay: the vLLM client, the model catalog, usage recording, metrics and the routes.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/authenticate.js';
import type { Config } from '../config.js';
import type { Database } from '../platform/database.js';
import type { Metrics } from '../platform/metrics.js';
import type { Upstreams } from '../upstream/index.js';
import { createUsageRecorder } from '../usage/usage-recorder.js';
import { createUsageRepository } from '../usage/usage-repository.js';
import { createChatMetrics } from './chat-metrics.js';
import { createRelayService } from './relay-service.js';
import { appModelsRoute, v1Routes } from './v1-routes.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import type { LimitsService } from '../limits/limits-service.js';
import { createConversationsRepository } from '../conversations/repository.js';
import { createConversationsService } from '../conversations/service.js';
import { conversationsRoutes } from '../conversations/routes.js';
import { createChatService } from './chat-service.js';
import { chatRoutes } from './chat-routes.js';
import { createGenerationRegistry } from './generation-registry.js';

export async function registerRelay(
  app: FastifyInstance,
  dependencies: {
    config: Config;
    db: Database;
    store: KeyValueStore;
    upstreams: Upstreams;
    metrics: Metrics;
    logger: Logger;
    authenticator: Authenticator;
    limits: LimitsService;
  },
) {
  const { config, logger, authenticator } = dependencies;
  const chatMetrics = createChatMetrics(dependencies.metrics.registry);
  const { vllm, catalog, router } = dependencies.upstreams;
  const usageRepository = createUsageRepository(dependencies.db);
  const usage = createUsageRecorder({
    repository: usageRepository,
    logger,
    flushIntervalMs: config.relay.usageFlushIntervalMs,
    onDropped: (count) => chatMetrics.usageEventsDropped.inc(count),
  });
  const relayService = createRelayService({
    vllm,
    router,
    catalog,
    policy: { cacheSaltSecret: config.vllm.cacheSaltPerUser ? config.jwt.secret : null, priorityByRole: config.vllm.priorityByRole },
    timeouts: config.relay,
    metrics: chatMetrics,
    usage,
  });

  // Learn the model list at start and keep it fresh, so metrics can label by model without
  // ever fetching on a request's path.
  const refreshModels = () => void catalog.list().catch((error: unknown) => logger.warn({ err: error }, 'could not list vLLM models'));
  refreshModels();
  const refresher = setInterval(refreshModels, Math.max(config.vllm.modelsCacheTtlMs, 1000));
  refresher.unref();

  const conversations = createConversationsRepository(dependencies.db);
  const conversationsService = createConversationsService({ conversations });
  const registry = createGenerationRegistry({ store: dependencies.store, logger });
  await registry.start();
  const chatService = createChatService({
    relayService,
    conversationsService,
    conversations,
    registry,
    catalog,
    countTokens: ({ model, messages }) => {
      const upstream = router.peek(router.resolveModel(model));
      return upstream === null ? Promise.resolve(null) : vllm.countTokens({ baseUrl: upstream.url, apiKey: upstream.apiKey, model: router.resolveModel(model), messages, timeoutMs: config.vllm.healthTimeoutMs });
    },
    affinity: config.routing.affinity,
    maxHistoryMessages: config.relay.maxMessages,
    logger,
  });

  // A crash leaves assistant messages in `streaming`: older than any generation may last, they are
  // marked interrupted, at start and then every minute. A single instance (the in-process store)
  // knows at start that none of them is running anywhere.
  const startedAt = new Date();
  const sweep = () =>
    void conversations
      .interruptStale(dependencies.store.kind === 'memory' ? startedAt : new Date(Date.now() - config.relay.totalTimeoutMs - 60_000))
      .then((count) => (count > 0 ? logger.warn({ count }, 'marked stale streaming messages interrupted') : undefined))
      .catch((error: unknown) => logger.warn({ err: error }, 'stale message sweep failed'));
  sweep();
  const sweeper = setInterval(sweep, 60_000);
  sweeper.unref();

  // Shutdown: running generations end now, so their partial answers are saved before the pools close.
  app.addHook('preClose', (done) => {
    const stopped = registry.stopAll('shutdown');
    if (stopped > 0) logger.info({ stopped }, 'generations interrupted by shutdown');
    done();
  });
  app.addHook('onClose', async () => {
    clearInterval(refresher);
    clearInterval(sweeper);
    await registry.close();
    await usage.close();
  });

  const requestLimits = { maxTokensCap: config.limits.maxTokensCap, maxChoices: config.relay.maxChoices, maxMessages: config.relay.maxMessages };
  const admission = { limits: dependencies.limits, defaultReservation: config.limits.defaultTokenReservation };
  await app.register(v1Routes, { prefix: '/v1', relayService, catalog, authenticator, requestLimits, ...admission });
  await app.register(appModelsRoute, { prefix: '/api', catalog, authenticator });
  await app.register(conversationsRoutes, { prefix: '/api/conversations', conversationsService, authenticator, maxTokensCap: config.limits.maxTokensCap });
  await app.register(chatRoutes, { prefix: '/api', chatService, registry, conversations, authenticator, requestLimits, ...admission });
  return { relayService, catalog, usage, usageRepository, conversations };
}
