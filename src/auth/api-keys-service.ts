// API keys for programs: created with the secret shown once, listed without it, revoked at once.
// "Last used" is remembered in memory and written in batches, never on the request path.
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import type { AccessState } from './access-state.js';
import type { ApiKeysRepository } from './api-keys-repository.js';
import { createApiKeySecret } from './secrets.js';

const lastUsedFlushIntervalMs = 30_000;

export function createApiKeysService(dependencies: { apiKeys: ApiKeysRepository; accessState: AccessState; logger: Logger }) {
  const { apiKeys, accessState, logger } = dependencies;
  let pendingUses = new Map<string, Date>();

  async function flushLastUsed(): Promise<void> {
    if (pendingUses.size === 0) return;
    const batch = pendingUses;
    pendingUses = new Map();
    try {
      await apiKeys.recordLastUsed([...batch].map(([id, usedAt]) => ({ id, usedAt })));
    } catch (error) {
      logger.warn({ err: error, keys: batch.size }, 'could not record API key use; will retry');
      for (const [id, usedAt] of batch) if (!pendingUses.has(id)) pendingUses.set(id, usedAt);
    }
  }

  const flushTimer = setInterval(() => void flushLastUsed(), lastUsedFlushIntervalMs);
  flushTimer.unref();

  return {
    async create(input: { userId: string; name: string; expiresInDays?: number | undefined }) {
      const secret = createApiKeySecret();
      const expiresAt = input.expiresInDays === undefined ? null : new Date(Date.now() + input.expiresInDays * 86_400_000);
      const record = await apiKeys.insert({ userId: input.userId, name: input.name.trim(), prefix: secret.prefix, keyHash: secret.hash, expiresAt });
      return { record, key: secret.key };
    },

    list: (userId: string) => apiKeys.listActive(userId),

    async revoke(input: { userId: string; id: string }): Promise<void> {
      const keyHash = await apiKeys.revoke(input);
      if (keyHash === undefined) throw new GatewayError('not_found', 'API key not found');
      await accessState.publishChange({ apiKeyHashes: [keyHash] });
    },

    /** Remembers a use; the database learns of it at the next flush. */
    recordUse(apiKeyId: string): void {
      pendingUses.set(apiKeyId, new Date());
    },

    flushLastUsed,

    async close(): Promise<void> {
      clearInterval(flushTimer);
      await flushLastUsed();
    },
  };
}

export type ApiKeysService = ReturnType<typeof createApiKeysService>;
