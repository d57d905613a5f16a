// Operator actions on users: list with filters, change role or status. A change ends the user's
// older tokens at once (through the account service), on every instance.
import { GatewayError } from '../errors.js';
import type { AccountService } from '../auth/service.js';
import type { LimitOverrides, UserRecord, UsersRepository } from '../auth/users-repository.js';
import { decodeCursor, encodeCursor, pageOf } from '../platform/cursor.js';
import type { ListUsersQuery, UpdateUserBody } from './schemas.js';

export function createAdminService(dependencies: { users: UsersRepository; accountService: AccountService }) {
  const { users, accountService } = dependencies;

  return {
    async listUsers(query: ListUsersQuery): Promise<{ users: Array<UserRecord & LimitOverrides>; nextCursor: string | null }> {
      const limit = query.limit ?? 20;
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      const rows = await users.list({
        email: query.email,
        role: query.role,
        status: query.status,
        after: after === undefined ? undefined : { createdAtMicros: after.atMicros, id: after.id },
        limit: limit + 1,
      });
      const page = pageOf(rows, limit, (last) => encodeCursor({ atMicros: last.created_at_micros, id: last.id }));
      return { users: page.items, nextCursor: page.nextCursor };
    },

    async updateUser(input: { actorId: string; userId: string; change: UpdateUserBody }): Promise<UserRecord> {
      const { role, status, ...limits } = input.change;
      if (input.actorId === input.userId && (role === 'user' || status === 'disabled')) {
        // Keeps at least the acting admin able to undo a mistake.
        throw new GatewayError('conflict', 'Administrators cannot demote or disable themselves');
      }
      const existing = await users.findById(input.userId);
      if (existing === undefined) throw new GatewayError('not_found', 'User not found');
      await users.updateLimits(input.userId, limits);
      // Role and status end older tokens (token_version); limits alone do not.
      const updated = role === undefined && status === undefined ? existing : await users.updateAccess(input.userId, { role, status });
      if (updated === undefined) throw new GatewayError('not_found', 'User not found');
      // Either way the cached state is dropped, so every instance applies the change on its next request.
      await accountService.afterAccessChange({ userId: updated.id, disabled: updated.status === 'disabled' });
      return updated;
    },

    findLimits: (userId: string) => users.findLimits(userId),
  };
}

export type AdminService = ReturnType<typeof createAdminService>;
