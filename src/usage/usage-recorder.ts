// Records usage without touching the database on the request path: events queue in memory and a
// timer writes them in batches. If PostgreSQL is down the queue keeps them (bounded; the oldest are
// dropped and counted past the bound) and the next flush retries. An event PostgreSQL refuses for
// what it holds is dropped alone: it must never hold back everyone's usage behind it.
import type { Logger } from 'pino';
import { sqlStateOf } from '../platform/database-errors.js';
import { storableOptionalText, storableText } from '../platform/storable-text.js';
import type { UsageEvent, UsageRepository } from './usage-repository.js';

const maximumQueuedEvents = 50_000;
const batchSize = 500;

export function createUsageRecorder(options: { repository: UsageRepository; logger: Logger; flushIntervalMs: number; onDropped?: (count: number) => void }) {
  let queue: UsageEvent[] = [];
  let flushing: Promise<void> | null = null;

  async function writeQueued(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, batchSize);
      let handled = batch.length;
      try {
        await options.repository.insertMany(batch);
      } catch (error) {
        if (!refusedForContent(error)) {
          options.logger.warn({ err: error, queued: queue.length }, 'usage events not written; will retry');
          return;
        }
        // Refused for what it holds, the batch would be refused forever: its events go one by one.
        handled = await writeOneByOne(batch, error);
      }
      queue = queue.slice(handled);
      if (handled < batch.length) return;
    }
  }

  /**
   * How many of the batch's events are done with — written, or refused and dropped (counted) —
   * before one failed for another reason (the database went away): that one and the rest stay queued.
   */
  async function writeOneByOne(batch: UsageEvent[], batchError: unknown): Promise<number> {
    let refused = 0;
    let handled = 0;
    for (const event of batch) {
      try {
        await options.repository.insertMany([event]);
      } catch (error) {
        if (!refusedForContent(error)) break;
        refused += 1;
      }
      handled += 1;
    }
    if (refused > 0) {
      options.onDropped?.(refused);
      options.logger.error({ err: batchError, dropped: refused }, 'usage events refused by the database were dropped');
    }
    return handled;
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
      queue.push(storable(event));
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

/** The strings that come from outside (a caller's model name, vLLM's finish reason), storable. */
function storable(event: UsageEvent): UsageEvent {
  const model = storableText(event.model);
  const finishReason = storableOptionalText(event.finishReason);
  return model === event.model && finishReason === event.finishReason ? event : { ...event, model, finishReason };
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity violation): the rows, not the moment, are at fault. */
function refusedForContent(error: unknown): boolean {
  const code = sqlStateOf(error);
  return code !== null && (code.startsWith('22') || code.startsWith('23'));
}
