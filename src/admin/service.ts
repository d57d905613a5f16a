// Operator actions on users: list with filters, change role or status. A change ends the user's
// older tokens at once (through the account service), on every instance.
import { GatewayError } from '../errors.js';
import type { AccountService } from '../auth/service.js';
import type { UserRecord, UsersRepository } from '../auth/users-repository.js';
import { decodeCursor, encodeCursor } from '../platform/cursor.js';
import type { ListUsersQuery, UpdateUserBody } from './schemas.js';

export function createAdminService(dependencies: { users: UsersRepository; accountService: AccountService }) {
  const { users, accountService } = dependencies;

  return {
    async listUsers(query: ListUsersQuery): Promise<{ users: UserRecord[]; nextCursor: string | null }> {
      const limit = query.limit ?? 20;
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      const rows = await users.list({
        email: query.email,
        role: query.role,
        status: query.status,
        after: after === undefined ? undefined : { createdAtMicros: after.atMicros, id: after.id },
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return { users: page, nextCursor: rows.length > limit && last !== undefined ? encodeCursor({ atMicros: last.created_at_micros, id: last.id }) : null };
    },

    async updateUser(input: { actorId: string; userId: string; change: UpdateUserBody }): Promise<UserRecord> {
      if (input.actorId === input.userId && (input.change.role === 'user' || input.change.status === 'disabled')) {
        // Keeps at least the acting admin able to undo a mistake.
        throw new GatewayError('conflict', 'Administrators cannot demote or disable themselves');
      }
      const updated = await users.updateAccess(input.userId, input.change);
      if (updated === undefined) throw new GatewayError('not_found', 'User not found');
      await accountService.afterAccessChange({ userId: updated.id, disabled: updated.status === 'disabled' });
      return updated;
    },
  };
}

export type AdminService = ReturnType<typeof createAdminService>;
