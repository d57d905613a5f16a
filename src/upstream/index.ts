// Wires the vLLM side: the configured servers (VLLM_BASE_URL or UPSTREAMS_FILE, reloaded on change
// or SIGHUP), the router, the model catalog and the active monitor.
import { watchFile, unwatchFile } from 'node:fs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { HttpClient } from '../platform/http-client.js';
import { createModelCatalog } from './model-catalog.js';
import { createUpstreamMonitor } from './upstream-monitor.js';
import { createUpstreamRouter } from './upstream-router.js';
import { loadUpstreamsFile, upstreamsFromUrls, type UpstreamsConfig } from './upstreams-config.js';
import { createVllmClient } from './vllm-client.js';

export function createUpstreams(options: { config: Config; client: HttpClient; registry: Registry; logger: Logger }) {
  const { config, logger } = options;
  const load = (): UpstreamsConfig =>
    config.upstreamsFile === null ? upstreamsFromUrls(config.vllm.baseUrls, config.vllm.apiKey) : loadUpstreamsFile(config.upstreamsFile, config.vllm.apiKey);

  const vllm = createVllmClient({ client: options.client });
  const router = createUpstreamRouter({ ...config.routing, affinitySlack: 2 }, load());
  const catalog = createModelCatalog({ vllm, router, ttlMs: config.vllm.modelsCacheTtlMs, timeoutMs: config.vllm.healthTimeoutMs });
  const monitor = createUpstreamMonitor({ router, vllm, client: options.client, registry: options.registry, intervalMs: config.routing.pollIntervalMs, timeoutMs: config.vllm.healthTimeoutMs, logger });

  /** Re-reads the servers; a bad file is logged and the running configuration kept. */
  function reload(): boolean {
    try {
      router.configure(load());
      catalog.invalidate();
      void catalog.list().catch(() => undefined);
      logger.info({ upstreams: router.upstreams().map((upstream) => upstream.name) }, 'vLLM servers reloaded');
      return true;
    } catch (error) {
      logger.error({ err: error }, 'vLLM servers not reloaded: the configuration is invalid');
      return false;
    }
  }

  const watching = config.upstreamsFile;
  if (watching !== null) watchFile(watching, { interval: 1000, persistent: false }, () => reload());

  return {
    vllm,
    router,
    catalog,
    monitor,
    reload,
    close(): void {
      monitor.stop();
      if (watching !== null) unwatchFile(watching);
    },
  };
}

export type Upstreams = ReturnType<typeof createUpstreams>;
