// The OpenAPI document, built from the route schemas, at /openapi.json, and a browsable UI at /docs.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { gatewayVersion } from './version.js';

export async function registerApiDocs(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'vLLM Chat Gateway',
        description: 'Accounts, conversations, streaming chat, limits and an OpenAI-compatible /v1 API in front of vLLM.',
        version: gatewayVersion,
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An access token or an API key (vcg_...)' } },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
}
