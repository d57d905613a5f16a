// The small shared-state interface the gateway needs from Redis: counters, expiring keys,
// pub/sub and atomic admission control. Redis implements it for many instances; the in-process
// store for a single one. Keys and channels are logical names: each implementation adds the prefix.
import type { AdmissionRequest, AdmissionResult, QuotaCheck, RateCheck, Settlement } from './admission.js';

export interface AdmissionPeek {
  rates: Array<{ remaining: number; resetMs: number }>;
  quotas: Array<{ used: number; resetMs: number }>;
}

/** A subscription whose delivery can be vouched for (see change-feed.ts). */
export interface ChannelWatch {
  /**
   * Resolves once every message published on the channel before this call has reached the
   * listener; rejects when that cannot be known (the subscription is not in place, or broke).
   */
  confirm(): Promise<void>;
  close(): Promise<void>;
}

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
  /**
   * Sets a value only while `markerKey` still holds `marker` (null: still absent). A cache filled
   * from a read that began before a change must not overwrite what the change wrote or deleted:
   * the writer of the change bumps the marker first. True when the value was written.
   */
  setUnlessChanged(entry: { key: string; value: string; ttlMs: number; markerKey: string; marker: string | null }): Promise<boolean>;
  /** Adds `amount` to an integer counter and returns the new value; a new counter expires after ttlMs. */
  increment(key: string, options: { amount?: number; ttlMs: number }): Promise<number>;
  publish(channel: string, message: string): Promise<void>;
  /** Calls listener for every message on the channel until the returned function is called. */
  subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>>;
  /**
   * Like subscribe, on a connection of its own whose breaks are reported: messages published while
   * it is broken are lost, so `broken` is called on every break (and not after close).
   */
  watch(channel: string, handlers: { message(message: string): void; broken(): void }): Promise<ChannelWatch>;
  /** Checks and consumes rate, quota and concurrency limits atomically, in one round trip. */
  admit(request: AdmissionRequest): Promise<AdmissionResult>;
  /** Replaces token reservations with real usage and releases a concurrency lease. */
  settle(settlement: Settlement): Promise<void>;
  /** Extends a running generation's concurrency lease. */
  renewLease(lease: { key: string; leaseId: string; ttlMs: number }): Promise<void>;
  /** Reads limit counters without consuming anything. */
  peek(request: { now: number; rates: RateCheck[]; quotas: Array<Omit<QuotaCheck, 'reserve'>> }): Promise<AdmissionPeek>;
  close(): Promise<void>;
}
