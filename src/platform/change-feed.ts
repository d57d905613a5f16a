// Changes that every instance must see before it next answers from memory: a credential revoked, a
// user disabled or given new limits. A change is announced on a channel; each instance keeps
// confirming its subscription (a PING through it comes back after every message published before
// the PING) and counts as current only while one sent within the trust window has come back. An
// announcement waits out that window before it returns, so once it has, an instance that has not
// seen the change no longer counts as current — and answers as if it held nothing in memory.
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import type { ChannelWatch, KeyValueStore } from './key-value-store.js';

/** The channel and timings every instance (and the command line) uses for changes of credentials and users. */
export const accessChanges = { channel: 'access:changes', trustWindowMs: 200, confirmEveryMs: 50 };

/** Publishes a change and waits out the trust window: on return, no instance holds state from before it as current. */
export async function announceChange(store: KeyValueStore, feed: { channel: string; trustWindowMs: number }, message: string): Promise<void> {
  await store.publish(feed.channel, message);
  // A timer may fire up to a millisecond early (libuv counts whole milliseconds): a margin on top.
  await delay(feed.trustWindowMs + announceMarginMs);
}

const announceMarginMs = 5;

export interface ChangeFeed {
  /** True while this instance has provably seen every change announced more than the trust window ago. */
  isCurrent(): boolean;
  /** Moves on every change and every break of the subscription: read before a step and after it, it says whether one came between. */
  epoch(): number;
  /** Called with each change's message, and with null on every break (when any change may have been missed). */
  onChange(listener: (message: string | null) => void): void;
  close(): Promise<void>;
}

export async function startChangeFeed(options: { store: KeyValueStore; channel: string; trustWindowMs: number; confirmEveryMs: number }): Promise<ChangeFeed> {
  const { store, trustWindowMs } = options;
  const listeners: Array<(message: string | null) => void> = [];
  let epoch = 0;
  let breaks = 0;
  /** When the newest PING that came back was sent (performance.now()). */
  let confirmedSentAt = -Infinity;
  let confirming = false;

  function changed(message: string | null): void {
    epoch += 1;
    for (const listener of listeners) listener(message);
  }

  const watch: ChannelWatch = await store.watch(options.channel, {
    message: changed,
    broken() {
      breaks += 1;
      confirmedSentAt = -Infinity;
      changed(null);
    },
  });

  function confirm(): void {
    if (confirming) return;
    confirming = true;
    const sentAt = performance.now();
    const breaksAtSend = breaks;
    watch.confirm().then(
      () => {
        confirming = false;
        if (breaks === breaksAtSend && sentAt > confirmedSentAt) confirmedSentAt = sentAt;
      },
      () => {
        confirming = false;
      },
    );
  }
  const confirmer = setInterval(confirm, options.confirmEveryMs);
  confirmer.unref();
  confirm();

  return {
    isCurrent: () => performance.now() - confirmedSentAt < trustWindowMs,
    epoch: () => epoch,
    onChange(listener) {
      listeners.push(listener);
    },
    async close() {
      clearInterval(confirmer);
      confirmedSentAt = -Infinity;
      await watch.close();
    },
  };
}
