// The shared store under test on its own, without an app: the in-process store always, Redis too
// when TEST_REDIS_URL is set (each suite with its own key prefix), and a clock for the admission tests.
import { afterAll, beforeAll } from 'vitest';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { testRedisUrl, uniqueName } from './environment.js';
import { deleteKeys } from './test-app.js';

export const minuteMs = 60_000;

export type StoreKind = 'memory' | 'redis';
export const storeKinds: StoreKind[] = testRedisUrl === null ? ['memory'] : ['memory', 'redis'];

export async function openStore(kind: StoreKind, prefix: string): Promise<KeyValueStore> {
  if (kind === 'memory') return createMemoryStore();
  return createRedisStore({ url: testRedisUrl!, keyPrefix: prefix });
}

/** A time `offsetMs` after the start of a fixed minute, at least a minute from now (Redis TTLs run on the real clock). */
export function minuteStart(offsetMs = 0): number {
  return (Math.floor(Date.now() / minuteMs) + 1) * minuteMs + offsetMs;
}

/**
 * Opens a store of this kind for the enclosing suite (handed to `use` in beforeAll), under a key
 * prefix of its own, and closes and empties it after the suite.
 */
export function storeForSuite(kind: StoreKind, label: string, use: (store: KeyValueStore) => void): void {
  const prefix = `${uniqueName(label)}:`;
  let opened: KeyValueStore | null = null;
  beforeAll(async () => {
    opened = await openStore(kind, prefix);
    use(opened);
  });
  afterAll(async () => {
    await opened?.close();
    await deleteKeys(prefix);
  });
}
