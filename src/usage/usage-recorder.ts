// Records usage without touching the database on the request path: events queue in memory and a
// timer writes them in batches. If PostgreSQL is down the queue keeps them (bounded; the oldest are
// dropped and counted past the bound) and the next flush retries.
import type { Logger } from 'pino';
import type { UsageEvent, UsageRepository } from './usage-repository.js';

const maximumQueuedEvents = 50_000;
const batchSize = 500;

export function createUsageRecorder(options: { repository: UsageRepository; logger: Logger; flushIntervalMs: number; onDropped?: (count: number) => void }) {
  let queue: UsageEvent[] = [];
  let flushing: Promise<void> | null = null;

  async function writeQueued(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, batchSize);
      try {
        await options.repository.insertMany(batch);
      } catch (error) {
        options.logger.warn({ err: error, queued: queue.length }, 'usage events not written; will retry');
        return;
      }
      queue = queue.slice(batch.length);
    }
  }

  function flush(): Promise<void> {
    flushing ??= writeQueued().finally(() => {
      flushing = null;
    });
    return flushing;
  }

  const timer = setInterval(() => void flush(), options.flushIntervalMs);
  timer.unref();

  return {
    record(event: UsageEvent): void {
      queue.push(event);
      if (queue.length > maximumQueuedEvents) {
        const dropped = queue.length - maximumQueuedEvents;
        queue = queue.slice(dropped);
        options.onDropped?.(dropped);
        options.logger.error({ dropped }, 'usage queue full: oldest events dropped');
      }
    },
    /** Writes everything queued now (tests, shutdown). */
    async flush(): Promise<void> {
      await flushing;
      await flush();
    },
    async close(): Promise<void> {
      clearInterval(timer);
      await this.flush();
    },
  };
}

export type UsageRecorder = ReturnType<typeof createUsageRecorder>;
