// System endpoints: /health (dependencies, 503 when a required one is down), the liveness and
// readiness probes, and /metrics for Prometheus.
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { HealthService } from './service.js';
import { healthReportSchema, probeSchema } from './schemas.js';

export interface HealthRoutesOptions {
  healthService: HealthService;
  metricsRegistry: Registry;
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, options) => {
  const { healthService, metricsRegistry } = options;

  app.get(
    '/health',
    { schema: { tags: ['system'], summary: 'Health of the gateway and its dependencies', response: { 200: healthReportSchema, 503: healthReportSchema } } },
    async (_request, reply) => {
      const report = await healthService.report();
      return reply.code(report.status === 'unhealthy' ? 503 : 200).send(report);
    },
  );

  app.get(
    '/health/live',
    { schema: { tags: ['system'], summary: 'Liveness: the process answers', response: { 200: probeSchema } } },
    () => ({ status: 'ok' }),
  );

  app.get(
    '/health/ready',
    { schema: { tags: ['system'], summary: 'Readiness: PostgreSQL and the store answer, not shutting down', response: { 200: probeSchema, 503: probeSchema } } },
    async (_request, reply) => {
      const readiness = await healthService.readiness();
      if (readiness.ready) return reply.send({ status: 'ready' });
      return reply.code(503).send({ status: 'not_ready', reason: readiness.reason ?? 'unknown' });
    },
  );

  app.get('/metrics', { schema: { tags: ['system'], summary: 'Prometheus metrics' } }, async (_request, reply) => {
    const body = await metricsRegistry.metrics();
    return reply.type(metricsRegistry.contentType).send(body);
  });
};
