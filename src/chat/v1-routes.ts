// The OpenAI-compatible API for programs: /v1/chat/completions, /v1/completions, /v1/models.
// Also /api/models for the app's own front end. Stateless: nothing is stored but usage.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Authenticator } from '../auth/authenticate.js';
import type { ModelCatalog } from '../upstream/model-catalog.js';
import { chatCompletionRequestSchema, completionRequestSchema, type RequestLimits } from './openai-schemas.js';
import type { Endpoint, RelayService } from './relay-service.js';
import type { LimitsService } from '../limits/limits-service.js';
import { runAdmitted } from '../limits/guard.js';
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface V1RoutesOptions {
  relayService: RelayService;
  limits: LimitsService;
  defaultReservation: number;
  catalog: ModelCatalog;
  authenticator: Authenticator;
  requestLimits: RequestLimits;
}

const security = [{ bearer: [] }];
const modelListSchema = Type.Object(
  { object: Type.Literal('list'), data: Type.Array(Type.Object({ id: Type.String() }, { additionalProperties: true })) },
  { additionalProperties: true },
);

export const v1Routes: FastifyPluginAsyncTypebox<V1RoutesOptions> = async (app, options) => {
  const { relayService, catalog, authenticator } = options;
  app.addHook('onRequest', authenticator.requireUser);

  const generate = (request: FastifyRequest, reply: FastifyReply, endpoint: Endpoint, body: Record<string, unknown>) =>
    runAdmitted({
      limits: options.limits,
      request,
      reply,
      body,
      defaultReservation: options.defaultReservation,
      authenticator,
      generate: (principal) => relayService.relay({ request, reply, principal, endpoint, body }),
    });
  // Nothing happens on these routes before the admission, so it can confirm the credential's state.
  const confirmsAccessAtAdmission = { confirmsAccessAtAdmission: true };

  app.post(
    '/chat/completions',
    {
      config: confirmsAccessAtAdmission,
      schema: { tags: ['openai'], summary: 'Chat completion, relayed to vLLM (JSON or SSE with stream: true)', security, body: chatCompletionRequestSchema(options.requestLimits) },
    },
    async (request, reply) => {
      await generate(request, reply, 'chat.completions', request.body);
      return reply;
    },
  );

  app.post(
    '/completions',
    { config: confirmsAccessAtAdmission, schema: { tags: ['openai'], summary: 'Text completion, relayed to vLLM', security, body: completionRequestSchema(options.requestLimits) } },
    async (request, reply) => {
      await generate(request, reply, 'completions', request.body);
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
