// Chooses the shared store: Redis when REDIS_URL is set, the in-process store otherwise.
import type { Config } from '../config.js';
import type { KeyValueStore } from './key-value-store.js';
import { createMemoryStore } from './memory-store.js';
import { createRedisStore } from './redis-store.js';

export async function openStore(options: { redis: Config['redis'] }): Promise<KeyValueStore> {
  if (options.redis.url === null) return createMemoryStore();
  return createRedisStore({ url: options.redis.url, keyPrefix: options.redis.keyPrefix });
}
