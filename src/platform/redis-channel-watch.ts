// A Redis subscription that can vouch for its delivery: a PING sent on the subscribed connection is
// answered after every message Redis published to it before the PING, so its answer proves those
// messages have been handled. The connection is its own and resubscribes itself after a reconnect,
// reporting each break: what was published meanwhile is lost, and nothing sent before the break
// (a PING included) vouches for anything after it.
import { Redis, type RedisOptions } from 'ioredis';
import type { ChannelWatch } from './key-value-store.js';

/**
 * A PING unanswered this long means the connection is dead without either side knowing (half-open:
 * a peer gone without a reset, a silently dropped NAT entry), which the OS may take many minutes to
 * notice. It is dropped and made again — a break like every other — so the feed can vouch again. As
 * long as the limits' own wait for Redis: a Redis that is slow but alive (a fork, a long command)
 * is not dropped, with everything held given back to it, every few seconds.
 */
export const stalledConfirmationMs = 10_000;

export function watchRedisChannel(options: {
  url: string;
  connectionOptions: RedisOptions;
  /** The channel's full name, prefix included. */
  channel: string;
  handlers: { message(message: string): void; broken(): void };
  /** How long a confirming PING may go unanswered before the connection is remade (stalledConfirmationMs). */
  stalledAfterMs?: number;
}): ChannelWatch {
  const stalledAfterMs = options.stalledAfterMs ?? stalledConfirmationMs;
  const { channel, handlers } = options;
  const connection = new Redis(options.url, {
    ...options.connectionOptions,
    lazyConnect: true,
    // Resubscribed below, so this file knows when the subscription is in place again.
    autoResubscribe: false,
    // A PING from before a break must not be answered after it, as if it vouched for the new connection.
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: false,
    // A break rejects the PING it strands (so the feed can confirm again), not keeps it for a retry.
    maxRetriesPerRequest: 0,
    commandTimeout: undefined,
    // Dropping a stalled connection: a half-open peer never answers our FIN, so do not wait for it.
    disconnectTimeout: 100,
  });
  /** Bumped by every break; a confirmation counts only if no break came between its PING and its answer. */
  let generation = 0;
  let subscribedIn = -1;
  let closed = false;
  connection.on('error', () => undefined);
  connection.on('message', (received: string, message: string) => {
    if (received === channel) handlers.message(message);
  });
  connection.on('close', () => {
    generation += 1;
    if (!closed) handlers.broken();
  });
  connection.on('ready', () => {
    const current = generation;
    connection.subscribe(channel).then(
      () => {
        if (current === generation) subscribedIn = current;
      },
      () => undefined,
    );
  });
  void connection.connect().catch(() => undefined);

  return {
    async confirm() {
      const current = generation;
      if (subscribedIn !== current) throw new Error('not subscribed');
      const stalled = setTimeout(() => {
        if (generation === current && !closed) connection.disconnect(true);
      }, stalledAfterMs);
      stalled.unref();
      try {
        await connection.ping();
      } finally {
        clearTimeout(stalled);
      }
      if (generation !== current) throw new Error('the subscription broke');
    },
    close() {
      closed = true;
      connection.disconnect();
      return Promise.resolve();
    },
  };
}
