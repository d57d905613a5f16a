// The shared store under test on its own, without an app: the in-process store always, Redis too
// when TEST_REDIS_URL is set (each suite with its own key prefix), and a clock for the admission tests.
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { testRedisUrl } from './environment.js';

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
