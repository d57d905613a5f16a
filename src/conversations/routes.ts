// /api/conversations: the caller's conversations and their messages.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { principalOf, type Authenticator } from '../auth/authenticate.js';
import { idParamsSchema, listOf } from '../auth/schemas.js';
import type { ConversationsService } from './service.js';
import {
  conversationSchema,
  createConversationBodySchema,
  listConversationsQuerySchema,
  listMessagesQuerySchema,
  messageSchema,
  updateConversationBodySchema,
} from './schemas.js';
import { toConversationView, toMessageView } from './views.js';

const tags = ['conversations'];
const security = [{ bearer: [] }];

export const conversationsRoutes: FastifyPluginAsyncTypebox<{ conversationsService: ConversationsService; authenticator: Authenticator; maxTokensCap: number }> = async (
  app,
  options,
) => {
  const { conversationsService: service } = options;
  app.addHook('onRequest', options.authenticator.requireUser);

  app.get('/', { schema: { tags, summary: 'Own conversations, newest activity first', security, querystring: listConversationsQuerySchema, response: { 200: listOf(conversationSchema) } } }, async (request) => {
    const { conversations, nextCursor } = await service.list({ userId: principalOf(request).userId, limit: request.query.limit, cursor: request.query.cursor, search: request.query.q });
    return { data: conversations.map(toConversationView), next_cursor: nextCursor };
  });

  app.post(
    '/',
    { schema: { tags, summary: 'Create a conversation', security, body: createConversationBodySchema(options.maxTokensCap), response: { 201: conversationSchema } } },
    async (request, reply) => reply.code(201).send(toConversationView(await service.create(principalOf(request).userId, request.body))),
  );

  app.get('/:id', { schema: { tags, summary: 'One conversation', security, params: idParamsSchema, response: { 200: conversationSchema } } }, async (request) =>
    toConversationView(await service.getOwned(request.params.id, principalOf(request).userId)),
  );

  app.put(
    '/:id',
    { schema: { tags, summary: 'Change title, model, system prompt or settings', security, params: idParamsSchema, body: updateConversationBodySchema(options.maxTokensCap), response: { 200: conversationSchema } } },
    async (request) => toConversationView(await service.update({ id: request.params.id, userId: principalOf(request).userId, body: request.body })),
  );

  app.delete('/:id', { schema: { tags, summary: 'Delete a conversation and its messages', security, params: idParamsSchema, response: { 204: Type.Null() } } }, async (request, reply) => {
    await service.delete(request.params.id, principalOf(request).userId);
    return reply.code(204).send(null);
  });

  app.get(
    '/:id/messages',
    { schema: { tags, summary: 'Messages, oldest first', security, params: idParamsSchema, querystring: listMessagesQuerySchema, response: { 200: listOf(messageSchema) } } },
    async (request) => {
      const { messages, nextCursor } = await service.listMessages({ id: request.params.id, userId: principalOf(request).userId, limit: request.query.limit, cursor: request.query.cursor });
      return { data: messages.map(toMessageView), next_cursor: nextCursor };
    },
  );
};
