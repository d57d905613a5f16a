// Wires the relay: the vLLM client, the model catalog, usage recording, metrics and the routes.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/authenticate.js';
import type { Config } from '../config.js';
import type { Database } from '../platform/database.js';
import type { HttpClient } from '../platform/http-client.js';
import type { Metrics } from '../platform/metrics.js';
import { createModelCatalog } from '../upstream/model-catalog.js';
import { createVllmClient } from '../upstream/vllm-client.js';
import { createUsageRecorder } from '../usage/usage-recorder.js';
import { createUsageRepository } from '../usage/usage-repository.js';
import { createChatMetrics } from './chat-metrics.js';
import { createRelayService } from './relay-service.js';
import { appModelsRoute, v1Routes } from './v1-routes.js';

export async function registerRelay(
  app: FastifyInstance,
  dependencies: { config: Config; db: Database; upstreamClient: HttpClient; metrics: Metrics; logger: Logger; authenticator: Authenticator },
) {
  const { config, logger, authenticator } = dependencies;
  const chatMetrics = createChatMetrics(dependencies.metrics.registry);
  const vllm = createVllmClient({ client: dependencies.upstreamClient, apiKey: config.vllm.apiKey });
  const catalog = createModelCatalog({ vllm, baseUrls: config.vllm.baseUrls, ttlMs: config.vllm.modelsCacheTtlMs, timeoutMs: config.vllm.healthTimeoutMs });
  const usage = createUsageRecorder({
    repository: createUsageRepository(dependencies.db),
    logger,
    flushIntervalMs: config.relay.usageFlushIntervalMs,
    onDropped: (count) => chatMetrics.usageEventsDropped.inc(count),
  });
  const relayService = createRelayService({
    vllm,
    baseUrls: config.vllm.baseUrls,
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
  app.addHook('onClose', async () => {
    clearInterval(refresher);
    await usage.close();
  });

  const limits = { maxTokensCap: config.limits.maxTokensCap, maxChoices: config.relay.maxChoices, maxMessages: config.relay.maxMessages };
  await app.register(v1Routes, { prefix: '/v1', relayService, catalog, authenticator, limits });
  await app.register(appModelsRoute, { prefix: '/api', catalog, authenticator });
  return { relayService, catalog, usage };
}
