// SQL for login sessions and their refresh tokens. A session is one login; each refresh rotates
// its token, and a rotated token presented again (outside a short grace window) revokes the session.
import { sql } from 'kysely';
import type { Database } from '../platform/database.js';

export interface SessionRecord {
  id: string;
  user_id: string;
  user_agent: string | null;
  ip: string | null;
  created_at: Date;
  last_used_at: Date;
  expires_at: Date;
}

export type RefreshOutcome =
  | { kind: 'rotated'; sessionId: string; userId: string }
  | { kind: 'invalid' }
  | { kind: 'reused'; sessionId: string; userId: string };

const sessionColumns = ['id', 'user_id', 'user_agent', 'ip', 'created_at', 'last_used_at', 'expires_at'] as const;

export function createSessionsRepository(db: Database) {
  return {
    /** Opens a session with its first refresh token, in one transaction. */
    async create(input: { userId: string; userAgent: string | null; ip: string | null; tokenHash: string; expiresAt: Date }): Promise<SessionRecord> {
      return db.transaction().execute(async (transaction) => {
        const session = await transaction
          .insertInto('sessions')
          .values({ user_id: input.userId, user_agent: input.userAgent, ip: input.ip, expires_at: input.expiresAt })
          .returning(sessionColumns)
          .executeTakeFirstOrThrow();
        await transaction.insertInto('refresh_tokens').values({ session_id: session.id, token_hash: input.tokenHash, expires_at: input.expiresAt }).execute();
        return session;
      });
    },

    /**
     * Exchanges a refresh token for a new one. The row is locked, so two refreshes of one token
     * are decided one after the other: the first rotates it; the second succeeds too if it comes
     * within the grace window (two tabs refreshing at once), and otherwise revokes the session.
     */
    async rotate(input: { tokenHash: string; newTokenHash: string; expiresAt: Date; graceSeconds: number }): Promise<RefreshOutcome> {
      return db.transaction().execute(async (transaction) => {
        const token = await transaction
          .selectFrom('refresh_tokens')
          .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
          .select([
            'refresh_tokens.id',
            'refresh_tokens.status',
            'refresh_tokens.expires_at',
            'refresh_tokens.rotated_at',
            'refresh_tokens.session_id',
            'sessions.user_id',
            'sessions.revoked_at',
          ])
          .where('refresh_tokens.token_hash', '=', input.tokenHash)
          .forUpdate('refresh_tokens')
          .executeTakeFirst();
        if (token === undefined || token.revoked_at !== null || token.status === 'revoked' || token.expires_at.getTime() <= Date.now()) {
          return { kind: 'invalid' };
        }
        if (token.status === 'rotated') {
          const rotatedAgoMs = Date.now() - (token.rotated_at?.getTime() ?? 0);
          if (rotatedAgoMs > input.graceSeconds * 1000) {
            await revokeSessionIn(transaction, token.session_id, 'refresh token reused');
            return { kind: 'reused', sessionId: token.session_id, userId: token.user_id };
          }
        } else {
          await transaction.updateTable('refresh_tokens').set({ status: 'rotated', rotated_at: sql`now()` }).where('id', '=', token.id).execute();
        }
        await transaction
          .insertInto('refresh_tokens')
          .values({ session_id: token.session_id, token_hash: input.newTokenHash, parent_id: token.id, expires_at: input.expiresAt })
          .execute();
        await transaction.updateTable('sessions').set({ last_used_at: sql`now()`, expires_at: input.expiresAt }).where('id', '=', token.session_id).execute();
        return { kind: 'rotated', sessionId: token.session_id, userId: token.user_id };
      });
    },

    /** The session a refresh token belongs to, if the token is still current: a rotated or expired copy ends nothing. */
    async findSessionByTokenHash(tokenHash: string): Promise<{ sessionId: string; userId: string } | undefined> {
      return db
        .selectFrom('refresh_tokens')
        .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
        .select(['sessions.id as sessionId', 'sessions.user_id as userId'])
        .where('refresh_tokens.token_hash', '=', tokenHash)
        .where('refresh_tokens.status', '=', 'active')
        .where('refresh_tokens.expires_at', '>', new Date())
        .where('sessions.revoked_at', 'is', null)
        .executeTakeFirst();
    },

    /** Revokes one of the user's sessions and its refresh tokens; false when the user has no such open session. */
    async revoke(input: { sessionId: string; userId: string; reason: string }): Promise<boolean> {
      return db.transaction().execute(async (transaction) => {
        const revoked = await transaction
          .updateTable('sessions')
          .set({ revoked_at: sql`now()`, revoked_reason: input.reason })
          .where('id', '=', input.sessionId)
          .where('user_id', '=', input.userId)
          .where('revoked_at', 'is', null)
          .returning('id')
          .executeTakeFirst();
        if (revoked === undefined) return false;
        await transaction.updateTable('refresh_tokens').set({ status: 'revoked' }).where('session_id', '=', revoked.id).where('status', '!=', 'revoked').execute();
        return true;
      });
    },

    /** Revokes every open session of a user; returns their ids. */
    async revokeAllForUser(input: { userId: string; reason: string }): Promise<string[]> {
      return db.transaction().execute(async (transaction) => {
        const sessions = await transaction
          .updateTable('sessions')
          .set({ revoked_at: sql`now()`, revoked_reason: input.reason })
          .where('user_id', '=', input.userId)
          .where('revoked_at', 'is', null)
          .returning('id')
          .execute();
        const ids = sessions.map((session) => session.id);
        if (ids.length > 0) {
          await transaction.updateTable('refresh_tokens').set({ status: 'revoked' }).where('session_id', 'in', ids).where('status', '!=', 'revoked').execute();
        }
        return ids;
      });
    },

    async listActive(userId: string): Promise<SessionRecord[]> {
      return db
        .selectFrom('sessions')
        .select(sessionColumns)
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', new Date())
        .orderBy('last_used_at', 'desc')
        .limit(100)
        .execute();
    },
  };
}

async function revokeSessionIn(transaction: Database, sessionId: string, reason: string): Promise<void> {
  await transaction.updateTable('sessions').set({ revoked_at: sql`now()`, revoked_reason: reason }).where('id', '=', sessionId).execute();
  await transaction.updateTable('refresh_tokens').set({ status: 'revoked' }).where('session_id', '=', sessionId).execute();
}

export type SessionsRepository = ReturnType<typeof createSessionsRepository>;
