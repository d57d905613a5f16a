// /api/admin: operator endpoints, for the admin role only.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { GatewayError } from '../errors.js';
import { principalOf, type Authenticator } from '../auth/authenticate.js';
import { idParamsSchema, listOf, userSchema } from '../auth/schemas.js';
import { toUserView } from '../auth/views.js';
import { isUuid } from '../platform/identifiers.js';
import type { AdminService } from './service.js';
import { listUsersQuerySchema, updateUserBodySchema } from './schemas.js';

const tags = ['admin'];
const security = [{ bearer: [] }];

export const adminRoutes: FastifyPluginAsyncTypebox<{ adminService: AdminService; authenticator: Authenticator }> = async (app, options) => {
  const { adminService } = options;
  app.addHook('onRequest', options.authenticator.requireAdmin);

  app.get(
    '/users',
    { schema: { tags, summary: 'Users, oldest first, filtered by email, role or status', security, querystring: listUsersQuerySchema, response: { 200: listOf(userSchema) } } },
    async (request) => {
      const { users, nextCursor } = await adminService.listUsers(request.query);
      return { data: users.map(toUserView), next_cursor: nextCursor };
    },
  );

  app.patch(
    '/users/:id',
    { schema: { tags, summary: 'Change a user\'s role or status', security, params: idParamsSchema, body: updateUserBodySchema, response: { 200: userSchema } } },
    async (request) => {
      if (!isUuid(request.params.id)) throw new GatewayError('not_found', 'User not found');
      const updated = await adminService.updateUser({ actorId: principalOf(request).userId, userId: request.params.id, change: request.body });
      return toUserView(updated);
    },
  );
};
