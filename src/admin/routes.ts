// /api/admin: operator endpoints, for the admin role only.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { GatewayError } from '../errors.js';
import { principalOf, type Authenticator } from '../auth/authenticate.js';
import { idParamsSchema, listOf } from '../auth/schemas.js';
import { toUserView } from '../auth/views.js';
import type { Config } from '../config.js';
import type { LimitOverrides, UserRecord } from '../auth/users-repository.js';
import { effectiveLimits } from '../limits/effective-limits.js';
import { isUuid } from '../platform/identifiers.js';
import type { AdminService } from './service.js';
import { adminUserSchema, listUsersQuerySchema, updateUserBodySchema } from './schemas.js';

const tags = ['admin'];
const security = [{ bearer: [] }];

export const adminRoutes: FastifyPluginAsyncTypebox<{ adminService: AdminService; authenticator: Authenticator; limitsConfig: Config['limits'] }> = async (app, options) => {
  const { adminService } = options;
  const toAdminView = (user: UserRecord, limits: LimitOverrides) => {
    const effective = effectiveLimits({ config: options.limitsConfig, role: user.role, overrides: limits });
    return {
      ...toUserView(user),
      limits: {
        rate_limit_requests: limits.rate_limit_requests,
        rate_limit_window_seconds: limits.rate_limit_window_seconds,
        token_quota_per_minute: limits.token_quota_per_minute,
        token_quota_per_day: limits.token_quota_per_day,
        max_concurrent_streams: limits.max_concurrent_streams,
      },
      effective_limits: {
        requests: effective.requests,
        window_seconds: effective.windowSeconds,
        tokens_per_minute: effective.tokensPerMinute,
        tokens_per_day: effective.tokensPerDay,
        max_concurrent_streams: effective.maxConcurrentStreams,
      },
    };
  };
  app.addHook('onRequest', options.authenticator.requireAdmin);

  app.get(
    '/users',
    { schema: { tags, summary: 'Users, oldest first, filtered by email, role or status', security, querystring: listUsersQuerySchema, response: { 200: listOf(adminUserSchema) } } },
    async (request) => {
      const { users, nextCursor } = await adminService.listUsers(request.query);
      return { data: users.map((user) => toAdminView(user, user)), next_cursor: nextCursor };
    },
  );

  app.patch(
    '/users/:id',
    { schema: { tags, summary: 'Change a user\'s role, status or limits (at once, on every instance)', security, params: idParamsSchema, body: updateUserBodySchema, response: { 200: adminUserSchema } } },
    async (request) => {
      if (!isUuid(request.params.id)) throw new GatewayError('not_found', 'User not found');
      const updated = await adminService.updateUser({ actorId: principalOf(request).userId, userId: request.params.id, change: request.body });
      const limits = await adminService.findLimits(updated.id);
      if (limits === undefined) throw new GatewayError('not_found', 'User not found');
      return toAdminView(updated, limits);
    },
  );
};
