// GET /api/admin/upstreams: each vLLM server, its models, state, load and recent error rate.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Authenticator } from '../auth/authenticate.js';
import type { UpstreamRouter } from './upstream-router.js';

const upstreamSchema = Type.Object({
  name: Type.String(),
  url: Type.String(),
  models: Type.Array(Type.String()),
  healthy: Type.Boolean(),
  breaker: Type.String({ description: 'closed, open or half_open' }),
  in_flight: Type.Integer(),
  max_concurrency: Type.Union([Type.Integer(), Type.Null()]),
  weight: Type.Number(),
  vllm_waiting_requests: Type.Union([Type.Number(), Type.Null()]),
  error_rate: Type.Number({ description: 'Failed share of requests over the last 5 minutes' }),
});

export const upstreamsAdminRoutes: FastifyPluginAsyncTypebox<{ router: UpstreamRouter; authenticator: Authenticator }> = async (app, options) => {
  app.get(
    '/upstreams',
    {
      onRequest: options.authenticator.requireAdmin,
      schema: { tags: ['admin'], summary: 'vLLM servers and their state', security: [{ bearer: [] }], response: { 200: Type.Object({ data: Type.Array(upstreamSchema), aliases: Type.Record(Type.String(), Type.String()) }) } },
    },
    () => {
      const now = Date.now();
      return {
        data: options.router.upstreams().map((upstream) => ({
          name: upstream.name,
          // Credentials in a URL are never shown.
          url: upstream.definition.url.replace(/\/\/[^@/]*@/, '//'),
          models: upstream.definition.models ?? upstream.discoveredModels ?? [],
          healthy: upstream.healthy,
          breaker: upstream.breaker,
          in_flight: upstream.inFlight,
          max_concurrency: upstream.definition.maxConcurrency,
          weight: upstream.definition.weight,
          vllm_waiting_requests: upstream.waiting,
          error_rate: Math.round(upstream.errorRate(now) * 1000) / 1000,
        })),
        aliases: options.router.aliases(),
      };
    },
  );
};
