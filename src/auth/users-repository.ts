// SQL for users: lookups, creation, and the changes that end older tokens (token_version bumps).
import { sql } from 'kysely';
import type { Database } from '../platform/database.js';
import { microsecondsSinceEpoch, timestampFromMicroseconds } from '../platform/sql-time.js';

export interface UserRecord {
  id: string;
  email: string;
  display_name: string | null;
  password_hash: string;
  role: 'user' | 'admin';
  status: 'active' | 'disabled';
  token_version: number;
  created_at: Date;
}

export interface UserListFilter {
  email?: string | undefined;
  role?: 'user' | 'admin' | undefined;
  status?: 'active' | 'disabled' | undefined;
  /** Keyset position: created_at (microseconds since the epoch) and id of the previous page's last user. */
  after?: { createdAtMicros: number; id: string } | undefined;
  limit: number;
}

/** Per-user limits an administrator set; null means the role's default. */
export interface LimitOverrides {
  rate_limit_requests: number | null;
  rate_limit_window_seconds: number | null;
  token_quota_per_minute: number | null;
  token_quota_per_day: number | null;
  max_concurrent_streams: number | null;
}

export const limitColumns = ['rate_limit_requests', 'rate_limit_window_seconds', 'token_quota_per_minute', 'token_quota_per_day', 'max_concurrent_streams'] as const;

const userColumns = ['id', 'email', 'display_name', 'password_hash', 'role', 'status', 'token_version', 'created_at'] as const;

export function createUsersRepository(db: Database) {
  return {
    async findByEmail(email: string): Promise<UserRecord | undefined> {
      return db.selectFrom('users').select(userColumns).where(sql<string>`lower(email)`, '=', email.toLowerCase()).executeTakeFirst();
    },

    async findById(id: string): Promise<UserRecord | undefined> {
      return db.selectFrom('users').select(userColumns).where('id', '=', id).executeTakeFirst();
    },

    /** Inserts a user; returns undefined when the email is taken (whatever its case). */
    async insert(user: { email: string; displayName: string | null; passwordHash: string; role: 'user' | 'admin' }): Promise<UserRecord | undefined> {
      const inserted = await sql<UserRecord>`
        insert into users (email, display_name, password_hash, role)
        values (${user.email}, ${user.displayName}, ${user.passwordHash}, ${user.role})
        on conflict ((lower(email))) do nothing
        returning id, email, display_name, password_hash, role, status, token_version, created_at`.execute(db);
      return inserted.rows[0];
    },

    async hasAdmin(): Promise<boolean> {
      const row = await db.selectFrom('users').select('id').where('role', '=', 'admin').limit(1).executeTakeFirst();
      return row !== undefined;
    },

    /** Sets a new password hash and bumps token_version so every older access token stops working. */
    async updatePassword(id: string, passwordHash: string): Promise<void> {
      await db
        .updateTable('users')
        .set({ password_hash: passwordHash, token_version: sql`token_version + 1`, updated_at: sql`now()` })
        .where('id', '=', id)
        .execute();
    },

    async bumpTokenVersion(id: string): Promise<void> {
      await db.updateTable('users').set({ token_version: sql`token_version + 1`, updated_at: sql`now()` }).where('id', '=', id).execute();
    },

    /** Changes role and/or status; any change bumps token_version. Returns the updated user. */
    async updateAccess(id: string, change: { role?: 'user' | 'admin' | undefined; status?: 'active' | 'disabled' | undefined }): Promise<UserRecord | undefined> {
      return db
        .updateTable('users')
        .set({
          ...(change.role === undefined ? {} : { role: change.role }),
          ...(change.status === undefined ? {} : { status: change.status }),
          token_version: sql`token_version + 1`,
          updated_at: sql`now()`,
        })
        .where('id', '=', id)
        .returning(userColumns)
        .executeTakeFirst();
    },

    /** Sets an administrator's per-user limits; null restores the role's default. */
    async updateLimits(id: string, limits: Partial<LimitOverrides>): Promise<void> {
      const columns: Partial<Record<keyof LimitOverrides, number | null>> = {};
      for (const [name, value] of Object.entries(limits) as Array<[keyof LimitOverrides, number | null | undefined]>) {
        if (value !== undefined) columns[name] = value;
      }
      if (Object.keys(columns).length === 0) return;
      await db.updateTable('users').set({ ...columns, updated_at: sql`now()` }).where('id', '=', id).execute();
    },

    async findLimits(id: string): Promise<LimitOverrides | undefined> {
      return db.selectFrom('users').select(limitColumns).where('id', '=', id).executeTakeFirst();
    },

    async list(filter: UserListFilter): Promise<Array<UserRecord & LimitOverrides & { created_at_micros: number }>> {
      let query = db.selectFrom('users').select([...userColumns, ...limitColumns, microsecondsSinceEpoch(sql.ref('created_at')).as('created_at_micros')]);
      if (filter.email !== undefined) {
        const escaped = filter.email.toLowerCase().replace(/[\\%_]/g, (character) => `\\${character}`);
        query = query.where(sql<string>`lower(email)`, 'like', `%${escaped}%`);
      }
      if (filter.role !== undefined) query = query.where('role', '=', filter.role);
      if (filter.status !== undefined) query = query.where('status', '=', filter.status);
      if (filter.after !== undefined) {
        const { createdAtMicros, id } = filter.after;
        const createdAt = timestampFromMicroseconds(createdAtMicros);
        query = query.where((eb) => eb.or([eb('created_at', '>', createdAt), eb.and([eb('created_at', '=', createdAt), eb('id', '>', id)])]));
      }
      return query.orderBy('created_at', 'asc').orderBy('id', 'asc').limit(filter.limit).execute();
    },

    /** What an access token check needs: the user's version, status and role, and its session's state. */
    async accessState(userId: string, sessionId: string | null) {
      return db
        .selectFrom('users')
        .leftJoin('sessions', (join) => join.onRef('sessions.user_id', '=', 'users.id').on('sessions.id', '=', sessionId ?? '00000000-0000-0000-0000-000000000000'))
        .select([
          'users.token_version',
          'users.status',
          'users.role',
          'users.rate_limit_requests',
          'users.rate_limit_window_seconds',
          'users.token_quota_per_minute',
          'users.token_quota_per_day',
          'users.max_concurrent_streams',
          'sessions.id as session_id',
          'sessions.revoked_at',
          'sessions.expires_at',
        ])
        .where('users.id', '=', userId)
        .executeTakeFirst();
    },
  };
}

export type UsersRepository = ReturnType<typeof createUsersRepository>;
