// The small shared-state interface the gateway needs from Redis: counters, expiring keys and
// pub/sub. Redis implements it for many instances; the in-process store for a single one.
// Keys and channels are logical names: each implementation adds the configured prefix.

export interface KeyValueStore {
  readonly kind: 'redis' | 'memory';
  /** Resolves when the store answers; rejects when it is unreachable. */
  ping(): Promise<void>;
  get(key: string): Promise<string | null>;
  /** Several keys in one round trip; null for each missing one. */
  getMany(keys: string[]): Promise<Array<string | null>>;
  /** Sets a value, optionally expiring after ttlMs milliseconds. */
  set(key: string, value: string, options?: { ttlMs?: number }): Promise<void>;
  delete(key: string): Promise<void>;
  /** Adds `amount` to an integer counter and returns the new value; a new counter expires after ttlMs. */
  increment(key: string, options: { amount?: number; ttlMs: number }): Promise<number>;
  publish(channel: string, message: string): Promise<void>;
  /** Calls listener for every message on the channel until the returned function is called. */
  subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
