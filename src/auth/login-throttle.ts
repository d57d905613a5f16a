// Slows password guessing: failed logins are counted per account-and-IP and per IP in the shared
// store, and further attempts are refused with 429 for the rest of the window. There is on purpose
// no counter per account alone: with one, an attacker could keep a real user locked out from
// everywhere; per account-and-IP, the owner logging in from elsewhere is never blocked.
import { GatewayError } from '../errors.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import { createMemoryStore } from '../platform/memory-store.js';

export interface LoginThrottleLimits {
  windowSeconds: number;
  perAccountAndIp: number;
    perIp: number;
}

export const defaultLoginThrottleLimits: LoginThrottleLimits = { windowSeconds: 900, perAccountAndIp: 5, perIp: 30 };

export function createLoginThrottle(options: { store: KeyValueStore; limits?: LoginThrottleLimits; onStoreFailure?: () => void }) {
  const limits = options.limits ?? defaultLoginThrottleLimits;
  // When the shared store is unreachable, this instance keeps counting on its own: logins stay throttled.
  const fallback = createMemoryStore();
  const windowMs = limits.windowSeconds * 1000;

  function counters(email: string, ip: string): Array<[string, number]> {
    const account = email.toLowerCase();
    return [
      [`login-failures:account-ip:${account}|${ip}`, limits.perAccountAndIp],
      [`login-failures:ip:${ip}`, limits.perIp],
    ];
  }

  async function withStore<T>(operation: (store: KeyValueStore) => Promise<T>): Promise<T> {
    try {
      return await operation(options.store);
    } catch {
      options.onStoreFailure?.();
      return operation(fallback);
    }
  }

  return {
    /** Refuses the attempt before any password work when a counter is already at its limit. */
    async assertAllowed(email: string, ip: string): Promise<void> {
      const current = counters(email, ip);
      const values = await withStore((store) => store.getMany(current.map(([key]) => key)));
      const exceeded = current.some(([, limit], index) => Number(values[index] ?? 0) >= limit);
      if (exceeded) {
        throw new GatewayError('rate_limited', 'Too many failed logins; try again later', {
          headers: { 'retry-after': String(limits.windowSeconds) },
        });
      }
    },

    async recordFailure(email: string, ip: string): Promise<void> {
      await withStore((store) => Promise.all(counters(email, ip).map(([key]) => store.increment(key, { ttlMs: windowMs }))));
    },

    /** A successful login clears the account-and-IP counter: the person at that address is the owner. */
    async recordSuccess(email: string, ip: string): Promise<void> {
      const [accountAndIp] = counters(email, ip);
      if (accountAndIp !== undefined) await withStore((store) => store.delete(accountAndIp[0]));
    },

    close: () => fallback.close(),
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
