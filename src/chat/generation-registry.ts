// The generations running on this instance, by assistant message id, so they can be stopped: by
// their owner from any instance (a stop is published on the shared store and the instance holding
// the stream acts on it), or all at once when this instance shuts down.
import type { Logger } from 'pino';
import type { KeyValueStore } from '../platform/key-value-store.js';
import type { StopReason } from './stream-relay.js';

const stopChannel = 'chat:stop';

export interface RunningGeneration {
  signal: AbortSignal;
  reason: () => StopReason;
  /** Call when the generation ended, whatever the way. */
  release: () => void;
}

export function createGenerationRegistry(options: { store: KeyValueStore; logger: Logger }) {
  const running = new Map<string, { controller: AbortController; reason: StopReason }>();
  let unsubscribe: (() => Promise<void>) | null = null;

  function stopLocal(messageId: string, reason: StopReason): boolean {
    const generation = running.get(messageId);
    if (generation === undefined) return false;
    generation.reason = reason;
    generation.controller.abort(new Error(`generation stopped (${reason})`));
    return true;
  }

  return {
    async start(): Promise<void> {
      try {
        unsubscribe = await options.store.subscribe(stopChannel, (messageId) => stopLocal(messageId, 'user'));
      } catch (error) {
        options.logger.warn({ err: error }, 'cannot listen for stop requests from other instances');
      }
    },

    register(messageId: string): RunningGeneration {
      const entry = { controller: new AbortController(), reason: 'user' as StopReason };
      running.set(messageId, entry);
      return { signal: entry.controller.signal, reason: () => entry.reason, release: () => running.delete(messageId) };
    },

    /** Stops a generation wherever it runs: here at once, elsewhere through the store. */
    async requestStop(messageId: string): Promise<void> {
      if (stopLocal(messageId, 'user')) return;
      await options.store.publish(stopChannel, messageId);
    },

    stopAll(reason: StopReason): number {
      for (const messageId of running.keys()) stopLocal(messageId, reason);
      return running.size;
    },

    async close(): Promise<void> {
      await unsubscribe?.();
    },
  };
}

export type GenerationRegistry = ReturnType<typeof createGenerationRegistry>;
