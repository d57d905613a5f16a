// Active checks of every vLLM server on an interval: GET /health (a failing server gets no traffic
// until it passes again) and GET /metrics for vLLM's own queue length, the tie-breaker between
// equally loaded replicas. Exposes each server's state as metrics.
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { checkUpstreamHealth } from './upstream-health.js';
import type { HttpClient } from '../platform/http-client.js';
import type { UpstreamRouter } from './upstream-router.js';
import type { VllmClient } from './vllm-client.js';

const breakerValues = { closed: 0, half_open: 1, open: 2 } as const;

/** Reads `vllm:num_requests_waiting` (summed over engines and models) from Prometheus text. */
export function readWaitingRequests(metricsText: string): number | null {
  let total: number | null = null;
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('vllm:num_requests_waiting')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  return total;
}

export function createUpstreamMonitor(options: { router: UpstreamRouter; vllm: VllmClient; client: HttpClient; registry: Registry; intervalMs: number; timeoutMs: number; logger: Logger }) {
  const { router } = options;
  const registers = [options.registry];
  const labelNames = ['upstream'] as const;
  new Gauge({
    name: 'upstream_healthy',
    help: '1 when the vLLM server passes its health check and its breaker is not open.',
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const upstream of router.upstreams()) this.set({ upstream: upstream.name }, upstream.healthy && upstream.breaker !== 'open' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'upstream_in_flight_requests',
    help: 'Requests this gateway has in flight to each vLLM server.',
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const upstream of router.upstreams()) this.set({ upstream: upstream.name }, upstream.inFlight);
    },
  });
  new Gauge({
    name: 'upstream_breaker_state',
    help: 'Circuit breaker of each vLLM server: 0 closed, 1 half-open, 2 open.',
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const upstream of router.upstreams()) this.set({ upstream: upstream.name }, breakerValues[upstream.breaker]);
    },
  });

  async function checkAll(): Promise<void> {
    await Promise.all(
      router.upstreams().map(async (upstream) => {
        const health = await checkUpstreamHealth({ client: options.client, baseUrl: upstream.definition.url, timeoutMs: options.timeoutMs });
        if (upstream.healthy !== health.healthy) options.logger.warn({ upstream: upstream.name, healthy: health.healthy, error: health.error }, 'vLLM server health changed');
        upstream.healthy = health.healthy;
        if (!health.healthy) return;
        const metrics = await options.vllm.get({ url: `${upstream.definition.url}/metrics`, apiKey: upstream.definition.apiKey, timeoutMs: options.timeoutMs }).catch(() => null);
        if (metrics?.statusCode === 200) upstream.waiting = readWaitingRequests(metrics.text);
      }),
    );
  }

  let timer: NodeJS.Timeout | null = null;
  return {
    checkAll,
    start(): void {
      void checkAll();
      timer = setInterval(() => void checkAll(), options.intervalMs);
      timer.unref();
    },
    stop(): void {
      if (timer !== null) clearInterval(timer);
    },
  };
}

export type UpstreamMonitor = ReturnType<typeof createUpstreamMonitor>;
