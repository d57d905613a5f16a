// The app's own chat API: POST /api/chat (SSE), POST /api/chat/completions (JSON), and
// POST /api/chat/{assistant_message_id}/stop.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { principalOf, type Authenticator } from '../auth/authenticate.js';
import { idParamsSchema } from '../auth/schemas.js';
import type { ConversationsRepository } from '../conversations/repository.js';
import { GatewayError } from '../errors.js';
import { isUuid } from '../platform/identifiers.js';
import type { ChatRequestBody, ChatService } from './chat-service.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { LimitsService } from '../limits/limits-service.js';
import { runAdmitted } from '../limits/guard.js';
import type { GenerationRegistry } from './generation-registry.js';
import { chatCompletionRequestSchema, messageRoles, type RequestLimits } from './openai-schemas.js';

const tags = ['chat'];
const security = [{ bearer: [] }];
const maximumContentLength = 200_000;
const idempotencyKeyPattern = /^[\x21-\x7e]{1,200}$/;

export function chatRequestSchema(limits: RequestLimits) {
  const base = chatCompletionRequestSchema(limits);
  return Type.Object(
    {
      ...base.properties,
      messages: Type.Array(
        Type.Object(
          {
            role: Type.Union(messageRoles.map((role) => Type.Literal(role))),
            content: Type.Union([
              Type.String({ maxLength: maximumContentLength }),
              // Multimodal parts: the same limit on each text part, so the limit cannot be dodged by wrapping.
              Type.Array(Type.Object({ text: Type.Optional(Type.String({ maxLength: maximumContentLength })) }, { additionalProperties: true }), { maxItems: 64 }),
            ]),
          },
          { additionalProperties: true },
        ),
        { minItems: 1, maxItems: limits.maxMessages },
      ),
      conversation_id: Type.Optional(Type.String({ maxLength: 1000, description: 'Append to this conversation; omitted, a new one is created' })),
      store: Type.Optional(Type.Boolean({ description: 'false: nothing is stored' })),
    },
    { additionalProperties: true },
  );
}

export const chatRoutes: FastifyPluginAsyncTypebox<{
  chatService: ChatService;
  registry: GenerationRegistry;
  conversations: ConversationsRepository;
  authenticator: Authenticator;
  requestLimits: RequestLimits;
  limits: LimitsService;
  defaultReservation: number;
}> = async (app, options) => {
  const { chatService } = options;
  app.addHook('onRequest', options.authenticator.requireUser);
  const body = chatRequestSchema(options.requestLimits);

  const send = (request: FastifyRequest, reply: FastifyReply, chatBody: ChatRequestBody) => {
    const idempotencyKey = idempotencyKeyOf(request.headers);
    return runAdmitted({
      limits: options.limits,
      request,
      reply,
      body: chatBody,
      defaultReservation: options.defaultReservation,
      authenticator: options.authenticator,
      generate: (principal) => chatService.chat({ request, reply, principal, body: chatBody, idempotencyKey }),
    });
  };
  // Nothing but the admission happens before a turn is sent, so it can confirm the credential's state.
  const config = { confirmsAccessAtAdmission: true };

  const idempotencyKeyOf = (headers: Record<string, unknown>): string | null => {
    const key = headers['idempotency-key'];
    if (key === undefined) return null;
    if (typeof key !== 'string' || !idempotencyKeyPattern.test(key)) {
      throw new GatewayError('validation_failed', 'Idempotency-Key must be 1 to 200 printable characters', { param: 'idempotency-key' });
    }
    return key;
  };

  app.post('/chat', { config, schema: { tags, summary: 'Send a turn; the answer streams as SSE', security, body } }, async (request, reply) => {
    await send(request, reply, { ...request.body, stream: true });
    return reply;
  });

  app.post('/chat/completions', { config, schema: { tags, summary: 'Send a turn; one JSON answer', security, body } }, async (request, reply) => {
    await send(request, reply, { ...request.body, stream: false });
    return reply;
  });

  app.post(
    '/chat/:id/stop',
    { schema: { tags, summary: 'Stop a generation (own only, on any instance)', security, params: idParamsSchema, response: { 202: Type.Object({ status: Type.Literal('stopping') }) } } },
    async (request, reply) => {
      const message = isUuid(request.params.id) ? await options.conversations.findMessageForOwner(request.params.id, principalOf(request).userId) : undefined;
      if (message?.role !== 'assistant') throw new GatewayError('not_found', 'Message not found');
      if (message.status !== 'streaming') throw new GatewayError('conflict', 'This message is not being generated');
      await options.registry.requestStop(message.id);
      return reply.code(202).send({ status: 'stopping' });
    },
  );
};
