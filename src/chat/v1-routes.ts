// The OpenAI-compatible API for programs: /v1/chat/completions, /v1/completions, /v1/models.
// Also /api/models for the app's own front end. Stateless: nothing is stored but usage.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Authenticator } from '../auth/authenticate.js';
import { principalOf } from '../auth/authenticate.js';
import type { ModelCatalog } from '../upstream/model-catalog.js';
import { chatCompletionRequestSchema, completionRequestSchema, type RequestLimits } from './openai-schemas.js';
import type { RelayService } from './relay-service.js';

export interface V1RoutesOptions {
  relayService: RelayService;
  catalog: ModelCatalog;
  authenticator: Authenticator;
  limits: RequestLimits;
}

const security = [{ bearer: [] }];
const modelListSchema = Type.Object(
  { object: Type.Literal('list'), data: Type.Array(Type.Object({ id: Type.String() }, { additionalProperties: true })) },
  { additionalProperties: true },
);

export const v1Routes: FastifyPluginAsyncTypebox<V1RoutesOptions> = async (app, options) => {
  const { relayService, catalog, authenticator } = options;
  app.addHook('onRequest', authenticator.requireUser);

  app.post(
    '/chat/completions',
    { schema: { tags: ['openai'], summary: 'Chat completion, relayed to vLLM (JSON or SSE with stream: true)', security, body: chatCompletionRequestSchema(options.limits) } },
    async (request, reply) => {
      await relayService.relay({ request, reply, principal: principalOf(request), endpoint: 'chat.completions', body: request.body });
      return reply;
    },
  );

  app.post(
    '/completions',
    { schema: { tags: ['openai'], summary: 'Text completion, relayed to vLLM', security, body: completionRequestSchema(options.limits) } },
    async (request, reply) => {
      await relayService.relay({ request, reply, principal: principalOf(request), endpoint: 'completions', body: request.body });
      return reply;
    },
  );

  // vLLM's format, max_model_len kept; a list re-serialised from the cache (it merges servers).
  app.get('/models', { schema: { tags: ['openai'], summary: 'Models vLLM serves', security, response: { 200: modelListSchema } } }, () => catalog.list());
};

/** GET /api/models: the same list, for the app's front end. */
export const appModelsRoute: FastifyPluginAsyncTypebox<{ catalog: ModelCatalog; authenticator: Authenticator }> = async (app, options) => {
  app.get(
    '/models',
    { onRequest: options.authenticator.requireUser, schema: { tags: ['chat'], summary: 'Models the caller may use, with max_model_len', security, response: { 200: modelListSchema } } },
    () => options.catalog.list(),
  );
};
