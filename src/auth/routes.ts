// /api/auth: register, login, refresh, logout, me, logout-all, sessions, password.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { GatewayError } from '../errors.js';
import { isUuid } from '../platform/identifiers.js';
import type { Authenticator } from './authenticate.js';
import { principalOf } from './authenticate.js';
import type { AccountService } from './service.js';
import {
  changePasswordBodySchema,
  idParamsSchema,
  listOf,
  loginBodySchema,
  logoutBodySchema,
  refreshBodySchema,
  registerBodySchema,
  sessionSchema,
  tokenResponseSchema,
  userSchema,
} from './schemas.js';
import { toSessionView, toUserView } from './views.js';

export interface AuthRoutesOptions {
  accountService: AccountService;
  authenticator: Authenticator;
  /** The per-IP limit on login, register and refresh: 429 before any work. */
  authRateLimit: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

const tags = ['auth'];
const security = [{ bearer: [] }];

export const authRoutes: FastifyPluginAsyncTypebox<AuthRoutesOptions> = async (app, { accountService, authenticator, authRateLimit }) => {
  const { requireUser } = authenticator;
  const limited = { onRequest: authRateLimit };
  const client = (request: { ip: string; headers: { 'user-agent'?: string | undefined } }) => ({ ip: request.ip, userAgent: request.headers['user-agent'] ?? null });

  app.post(
    '/register',
    { ...limited, schema: { tags, summary: 'Create an account', body: registerBodySchema, response: { 201: userSchema } } },
    async (request, reply) => reply.code(201).send(toUserView(await accountService.register(request.body))),
  );

  app.post(
    '/login',
    { ...limited, schema: { tags, summary: 'Log in: access and refresh tokens', body: loginBodySchema, response: { 200: tokenResponseSchema } } },
    async (request) => accountService.login(request.body, client(request)),
  );

  app.post(
    '/refresh',
    { ...limited, schema: { tags, summary: 'Exchange a refresh token for new tokens (rotates it)', body: refreshBodySchema, response: { 200: tokenResponseSchema } } },
    async (request) => accountService.refresh(request.body.refresh_token),
  );

  app.post(
    '/logout',
    {
      schema: { tags, summary: 'End this session now', security, body: logoutBodySchema, response: { 204: Type.Null() } },
      // The body is optional: a front end may log out with its access token alone.
      preValidation: (request, _reply, done) => {
        request.body ??= {};
        done();
      },
    },
    async (request, reply) => {
      const refreshToken = request.body.refresh_token;
      let access;
      if (request.headers.authorization !== undefined || refreshToken === undefined) {
        const principal = await authenticator.identify(request.headers.authorization);
        if (principal.kind !== 'access_token') throw new GatewayError('invalid_request', 'Log out with an access token; revoke API keys at /api/keys');
        access = principal;
      }
      await accountService.logout({ access, refreshToken });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/me',
    { onRequest: requireUser, schema: { tags, summary: 'The current user', security, response: { 200: userSchema } } },
    async (request) => toUserView(await accountService.me(principalOf(request).userId)),
  );

  app.post(
    '/logout-all',
    { onRequest: requireUser, schema: { tags, summary: 'End every session of the current user', security, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await accountService.logoutAll(principalOf(request).userId);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/sessions',
    { onRequest: requireUser, schema: { tags, summary: 'Open sessions of the current user', security, response: { 200: listOf(sessionSchema) } } },
    async (request) => {
      const principal = principalOf(request);
      const sessions = await accountService.listSessions(principal.userId);
      const current = principal.kind === 'access_token' ? principal.sessionId : null;
      return { data: sessions.map((session) => toSessionView(session, current)), next_cursor: null };
    },
  );

  app.delete(
    '/sessions/:id',
    { onRequest: requireUser, schema: { tags, summary: 'End one session', security, params: idParamsSchema, response: { 204: Type.Null() } } },
    async (request, reply) => {
      if (!isUuid(request.params.id)) throw new GatewayError('not_found', 'Session not found');
      await accountService.revokeSession({ userId: principalOf(request).userId, sessionId: request.params.id });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/password',
    { onRequest: requireUser, schema: { tags, summary: 'Change the password (ends every session)', security, body: changePasswordBodySchema, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await accountService.changePassword({ userId: principalOf(request).userId, currentPassword: request.body.current_password, newPassword: request.body.new_password });
      return reply.code(204).send(null);
    },
  );
};
