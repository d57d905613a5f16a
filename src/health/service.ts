// Health of the gateway and what it depends on. PostgreSQL and the store are required (without
// them the gateway answers 503); vLLM being down only degrades it, since accounts and history still work.
import type { DatabaseHandle } from '../platform/database.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import type { HttpClient } from '../platform/http-client.js';
import { gatewayVersion } from '../platform/version.js';
import { checkUpstreamHealth } from '../upstream/upstream-health.js';
import type { UpstreamRouter } from '../upstream/upstream-router.js';

export type ServiceStatus = 'up' | 'down';

export interface ServiceHealth {
  status: ServiceStatus;
  latency_ms: number;
  kind: string;
}

export interface HealthReport {
  status: 'ok' | 'degraded' | 'unhealthy';
  timestamp: string;
  version: string;
  services: {
    postgres: ServiceHealth;
    redis: ServiceHealth;
    vllm: ServiceHealth & {
      healthy_upstreams: number;
      total_upstreams: number;
      upstreams: Array<{ name: string; status: ServiceStatus; breaker: string; in_flight: number; latency_ms: number }>;
    };
  };
}

export interface HealthServiceOptions {
  database: DatabaseHandle;
  store: KeyValueStore;
  upstreamClient: HttpClient;
  router: UpstreamRouter;
  timeoutMs: number;
  /** True once shutdown began: the instance stops being ready so load balancers drain it. */
  isShuttingDown: () => boolean;
  onProblem: (problem: { service: string; error: string }) => void;
}

export function createHealthService(options: HealthServiceOptions) {
  async function timed(service: string, kind: string, probe: () => Promise<void>): Promise<ServiceHealth> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        probe(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
        }),
      ]);
      return { status: 'up', latency_ms: roundMs(performance.now() - started), kind };
    } catch (error) {
      options.onProblem({ service, error: error instanceof Error ? error.message : String(error) });
      return { status: 'down', latency_ms: roundMs(performance.now() - started), kind };
    } finally {
      clearTimeout(timer);
    }
  }

  const checkPostgres = () => timed('postgres', options.database.kind, () => options.database.ping());
  const checkStore = () => timed('redis', options.store.kind, () => options.store.ping());

  async function checkVllm(): Promise<HealthReport['services']['vllm']> {
    const results = await Promise.all(
      options.router.upstreams().map(async (upstream) => ({
        ...(await checkUpstreamHealth({ client: options.upstreamClient, baseUrl: upstream.definition.url, timeoutMs: options.timeoutMs })),
        name: upstream.name,
        breaker: upstream.breaker,
        inFlight: upstream.inFlight,
      })),
    );
    for (const result of results) {
      if (!result.healthy) options.onProblem({ service: 'vllm', error: `${result.name}: ${result.error ?? 'unhealthy'}` });
    }
    const healthy = results.filter((result) => result.healthy);
    return {
      status: healthy.length > 0 ? 'up' : 'down',
      latency_ms: roundMs(Math.min(...(healthy.length > 0 ? healthy : results).map((result) => result.latencyMs))),
      kind: 'vllm',
      healthy_upstreams: healthy.length,
      total_upstreams: results.length,
      upstreams: results.map((result) => ({ name: result.name, status: result.healthy ? 'up' : 'down', breaker: result.breaker, in_flight: result.inFlight, latency_ms: result.latencyMs })),
    };
  }

  return {
    async report(): Promise<HealthReport> {
      const [postgres, redis, vllm] = await Promise.all([checkPostgres(), checkStore(), checkVllm()]);
      const requiredDown = postgres.status === 'down' || redis.status === 'down';
      return {
        status: requiredDown ? 'unhealthy' : vllm.status === 'down' ? 'degraded' : 'ok',
        timestamp: new Date().toISOString(),
        version: gatewayVersion,
        services: { postgres, redis, vllm },
      };
    },

    /** Ready to take traffic: not shutting down, and PostgreSQL and the store answer. */
    async readiness(): Promise<{ ready: boolean; reason: string | null }> {
      if (options.isShuttingDown()) return { ready: false, reason: 'shutting down' };
      const [postgres, redis] = await Promise.all([checkPostgres(), checkStore()]);
      if (postgres.status === 'down') return { ready: false, reason: 'postgres unreachable' };
      if (redis.status === 'down') return { ready: false, reason: 'redis unreachable' };
      return { ready: true, reason: null };
    },
  };
}

export type HealthService = ReturnType<typeof createHealthService>;

function roundMs(value: number): number {
  return Math.round(value * 10) / 10;
}
