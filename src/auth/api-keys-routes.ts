// /api/keys: create (the secret is returned once), list (never the secret), revoke.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { GatewayError } from '../errors.js';
import { isUuid } from '../platform/identifiers.js';
import type { ApiKeysService } from './api-keys-service.js';
import { principalOf, type Authenticator } from './authenticate.js';
import { apiKeySchema, createApiKeyBodySchema, createdApiKeySchema, idParamsSchema, listOf } from './schemas.js';
import { toApiKeyView } from './views.js';

const tags = ['api keys'];
const security = [{ bearer: [] }];

export const apiKeysRoutes: FastifyPluginAsyncTypebox<{ apiKeysService: ApiKeysService; authenticator: Authenticator }> = async (app, options) => {
  const { apiKeysService } = options;
  app.addHook('onRequest', options.authenticator.requireUser);

  app.post(
    '/',
    { schema: { tags, summary: 'Create an API key (the key is shown only in this answer)', security, body: createApiKeyBodySchema, response: { 201: createdApiKeySchema } } },
    async (request, reply) => {
      const { record, key } = await apiKeysService.create({ userId: principalOf(request).userId, name: request.body.name, expiresInDays: request.body.expires_in_days });
      return reply.code(201).send({ ...toApiKeyView(record), key });
    },
  );

  app.get('/', { schema: { tags, summary: 'The current user\'s API keys', security, response: { 200: listOf(apiKeySchema) } } }, async (request) => {
    const keys = await apiKeysService.list(principalOf(request).userId);
    return { data: keys.map(toApiKeyView), next_cursor: null };
  });

  app.delete(
    '/:id',
    { schema: { tags, summary: 'Revoke an API key', security, params: idParamsSchema, response: { 204: Type.Null() } } },
    async (request, reply) => {
      if (!isUuid(request.params.id)) throw new GatewayError('not_found', 'API key not found');
      await apiKeysService.revoke({ userId: principalOf(request).userId, id: request.params.id });
      return reply.code(204).send(null);
    },
  );
};
