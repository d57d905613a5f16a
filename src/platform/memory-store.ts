// The embedded default when REDIS_URL is unset: the same interface held in this process's memory.
// It is correct for one gateway instance only; several instances need Redis to share limits.
import { EventEmitter } from 'node:events';
import type { KeyValueStore } from './key-value-store.js';
import { admitInMemory, createAdmissionState, peekInMemory, preconditionFailed, renewLeaseInMemory, settleInMemory, sweepAdmissionState } from './admission.js';

interface Entry {
  value: string;
  expiresAt: number | null;
}

const sweepIntervalMs = 10_000;

export function createMemoryStore(): KeyValueStore {
  const entries = new Map<string, Entry>();
  const admission = createAdmissionState();
  const channels = new EventEmitter();
  channels.setMaxListeners(0);

  // Expired keys are dropped when read and by this sweep, so memory stays bounded by live keys.
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [key, entry] of entries) {
      if (entry.expiresAt !== null && entry.expiresAt <= now) entries.delete(key);
    }
    sweepAdmissionState(admission, now);
  }, sweepIntervalMs);
  sweeper.unref();

  function live(key: string): Entry | undefined {
    const entry = entries.get(key);
    if (entry?.expiresAt != null && entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  }

  return {
    kind: 'memory',
    ping: () => Promise.resolve(),
    get: (key) => Promise.resolve(live(key)?.value ?? null),
    getMany: (keys) => Promise.resolve(keys.map((key) => live(key)?.value ?? null)),
    set(key, value, options) {
      entries.set(key, { value, expiresAt: options?.ttlMs === undefined ? null : Date.now() + options.ttlMs });
      return Promise.resolve();
    },
    delete(key) {
      entries.delete(key);
      return Promise.resolve();
    },
    setUnlessChanged(entry) {
      if ((live(entry.markerKey)?.value ?? null) !== entry.marker) return Promise.resolve(false);
      entries.set(entry.key, { value: entry.value, expiresAt: Date.now() + entry.ttlMs });
      return Promise.resolve(true);
    },
    increment(key, options) {
      const entry = live(key);
      const next = (entry === undefined ? 0 : Number(entry.value)) + (options.amount ?? 1);
      entries.set(key, { value: String(next), expiresAt: entry?.expiresAt ?? Date.now() + options.ttlMs });
      return Promise.resolve(next);
    },
    publish(channel, message) {
      // Delivered on a later tick, as Redis would, so a publisher never runs its own listeners inline.
      setImmediate(() => channels.emit(channel, message));
      return Promise.resolve();
    },
    subscribe(channel, listener) {
      channels.on(channel, listener);
      return Promise.resolve(() => {
        channels.off(channel, listener);
        return Promise.resolve();
      });
    },
    watch(channel, handlers) {
      const listener = (message: string) => handlers.message(message);
      channels.on(channel, listener);
      return Promise.resolve({
        // Messages are delivered from setImmediate, in order: one queued after them runs after them.
        confirm: () => new Promise<void>((resolve) => setImmediate(resolve)),
        close() {
          channels.off(channel, listener);
          return Promise.resolve();
        },
      });
    },
    admit(request) {
      const precondition = request.precondition;
      if (precondition != null && precondition.keys.some((key, index) => (live(key)?.value ?? null) !== (precondition.values[index] ?? null))) {
        return Promise.resolve(preconditionFailed);
      }
      return Promise.resolve(admitInMemory(admission, request));
    },
    settle(settlement) {
      settleInMemory(admission, settlement, Date.now());
      return Promise.resolve();
    },
    renewLease(lease) {
      renewLeaseInMemory(admission, lease, Date.now());
      return Promise.resolve();
    },
    peek: (request) => Promise.resolve(peekInMemory(admission, request)),
    close() {
      clearInterval(sweeper);
      entries.clear();
      channels.removeAllListeners();
      return Promise.resolve();
    },
  };
}
