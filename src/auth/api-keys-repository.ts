// SQL for API keys. Lookups go by the key's SHA-256 hash; last_used_at is written in batches.
import { sql } from 'kysely';
import type { Database } from '../platform/database.js';

export interface ApiKeyRecord {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  expires_at: Date | null;
  revoked_at: Date | null;
}

const apiKeyColumns = ['id', 'user_id', 'name', 'prefix', 'created_at', 'last_used_at', 'expires_at', 'revoked_at'] as const;

export function createApiKeysRepository(db: Database) {
  return {
    async insert(input: { userId: string; name: string; prefix: string; keyHash: string; expiresAt: Date | null }): Promise<ApiKeyRecord> {
      return db
        .insertInto('api_keys')
        .values({ user_id: input.userId, name: input.name, prefix: input.prefix, key_hash: input.keyHash, expires_at: input.expiresAt })
        .returning(apiKeyColumns)
        .executeTakeFirstOrThrow();
    },

    async listActive(userId: string): Promise<ApiKeyRecord[]> {
      return db
        .selectFrom('api_keys')
        .select(apiKeyColumns)
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .orderBy('created_at', 'desc')
        .limit(1000)
        .execute();
    },

    async findByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
      return db.selectFrom('api_keys').select(apiKeyColumns).where('key_hash', '=', keyHash).executeTakeFirst();
    },

    /** Revokes one of the user's keys; returns its hash, or undefined when the user has no such key. */
    async revoke(input: { id: string; userId: string }): Promise<string | undefined> {
      const row = await db
        .updateTable('api_keys')
        .set({ revoked_at: sql`now()` })
        .where('id', '=', input.id)
        .where('user_id', '=', input.userId)
        .where('revoked_at', 'is', null)
        .returning('key_hash')
        .executeTakeFirst();
      return row?.key_hash;
    },

    async revokeAllForUser(userId: string): Promise<string[]> {
      const rows = await db.updateTable('api_keys').set({ revoked_at: sql`now()` }).where('user_id', '=', userId).where('revoked_at', 'is', null).returning('key_hash').execute();
      return rows.map((row) => row.key_hash);
    },

    /** One statement for a whole batch of "this key was used at" facts. */
    async recordLastUsed(uses: Array<{ id: string; usedAt: Date }>): Promise<void> {
      if (uses.length === 0) return;
      const values = sql.join(uses.map((use) => sql`(${use.id}::uuid, ${use.usedAt.toISOString()}::timestamptz)`));
      await sql`
        update api_keys set last_used_at = batch.used_at
        from (values ${values}) as batch (id, used_at)
        where api_keys.id = batch.id and (api_keys.last_used_at is null or api_keys.last_used_at < batch.used_at)`.execute(db);
    },
  };
}

export type ApiKeysRepository = ReturnType<typeof createApiKeysRepository>;
