// The shared store over Redis (ioredis). Commands fail fast while Redis is unreachable instead of
// queueing, so callers can fall back or report it; the client keeps reconnecting in the background.
import { Redis } from 'ioredis';
import type { ChannelWatch, KeyValueStore } from './key-value-store.js';
import { currentTat, emissionInterval, parseRateState, quotaBucket, rateStanding } from './admission.js';
import { admissionScriptArguments, operationsScript, parseAdmissionReply, settlementScriptArguments } from './admission-script.js';
import { createScriptBatcher } from './redis-script-batch.js';
import { watchRedisChannel } from './redis-channel-watch.js';

/** How long a limits script call waits for Redis's answer, however late (see createRedisStore). */
const limitsAnswerTimeoutMs = 10_000;

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  /** How long one command may take before it counts as a failure. */
  commandTimeoutMs?: number;
  /** How long to wait for the first connection at start before going on without it. */
  connectTimeoutMs?: number;
  /** How long a watched channel's confirming PING may go unanswered before its connection is remade (redis-channel-watch). */
  subscriptionStallMs?: number;
}

/**
 * True when ioredis refused a command before writing it (the connection was down and the offline
 * queue is off): Redis cannot have run it. Any other failure — a timeout, a connection that closed —
 * may come after Redis ran it.
 */
export function commandNeverSent(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("Stream isn't writeable");
}

/** True when a command was written but not answered in time: it stays queued on a connection that is up, and Redis runs it when it answers again. */
export function commandTimedOut(error: unknown): boolean {
  return error instanceof Error && error.message === 'Command timed out';
}

export async function createRedisStore(options: RedisStoreOptions): Promise<KeyValueStore & { client: Redis }> {
  const connectionOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 1000,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
  };
  // Commands issued in the same tick by concurrent requests go out in one write (and one read of the
  // answers): under load a request's lookups and admission share syscalls with everyone else's.
  const client = new Redis(options.url, { ...connectionOptions, enableAutoPipelining: true });
  // Scripts are sent once and then run by their SHA (EVALSHA): a request carries its arguments only.
  client.defineCommand('gatewaySetUnlessChanged', { lua: setUnlessChangedScript, numberOfKeys: 2 });
  // The limits stop waiting for Redis after tens of milliseconds and give back what a late answer
  // granted once it comes (limits-service). ioredis's command timeout would drop an answer later
  // than a second unread — its slot held, its reservation charged — so the limits' script runs on a
  // connection of its own that waits far longer (bounded: a hung Redis must not grow the queue forever).
  const limitsClient = new Redis(options.url, { ...connectionOptions, commandTimeout: limitsAnswerTimeoutMs });
  limitsClient.defineCommand('gatewayOperations', { lua: operationsScript });
  const scripts = client as unknown as { gatewaySetUnlessChanged(...keysAndArguments: Array<string | number>): Promise<unknown> };
  const limitsScripts = limitsClient as unknown as { gatewayOperations(...keysAndArguments: Array<string | number>): Promise<unknown> };
  // Connection errors are reported by the commands that fail and by /health; without a listener
  // ioredis would print each reconnect attempt.
  client.on('error', () => undefined);
  limitsClient.on('error', () => undefined);
  // Admissions and settlements of one event-loop turn travel as one script call.
  const operations = createScriptBatcher((keys, args) => limitsScripts.gatewayOperations(keys.length, ...keys, ...args));
  let subscriber: Redis | null = null;
  const watches = new Set<ChannelWatch>();
  const subscriptionCounts = new Map<string, number>();
  const key = (name: string) => `${options.keyPrefix}${name}`;

  // Start anyway if Redis is not there: /health reports the store as down, and both keep retrying.
  await Promise.all([client.connect().catch(() => undefined), limitsClient.connect().catch(() => undefined)]);

  async function subscriberClient(): Promise<Redis> {
    if (subscriber === null) {
      subscriber = new Redis(options.url, { ...connectionOptions, enableOfflineQueue: true, commandTimeout: undefined });
      subscriber.on('error', () => undefined);
      await subscriber.connect().catch(() => undefined);
    }
    return subscriber;
  }

  return {
    kind: 'redis',
    client,
    async ping() {
      await client.ping();
    },
    get: (name) => client.get(key(name)),
    getMany: (names) => (names.length === 0 ? Promise.resolve([]) : client.mget(names.map(key))),
    async set(name, value, setOptions) {
      if (setOptions?.ttlMs === undefined) await client.set(key(name), value);
      else await client.set(key(name), value, 'PX', Math.max(1, Math.ceil(setOptions.ttlMs)));
    },
    async delete(name) {
      await client.del(key(name));
    },
    async setUnlessChanged(entry) {
      const ttlMs = Math.max(1, Math.ceil(entry.ttlMs));
      const written = await scripts.gatewaySetUnlessChanged(key(entry.key), key(entry.markerKey), entry.value, ttlMs, entry.marker === null ? 0 : 1, entry.marker ?? '');
      return written === 1;
    },
    async increment(name, incrementOptions) {
      // One round trip: INCRBY, then set the expiry only if the key had none (a new counter).
      const result = await client
        .multi()
        .incrby(key(name), incrementOptions.amount ?? 1)
        .pexpire(key(name), Math.max(1, Math.ceil(incrementOptions.ttlMs)), 'NX')
        .exec();
      const value = result?.[0]?.[1];
      if (typeof value !== 'number') throw new Error('Redis INCRBY returned no number');
      return value;
    },
    async publish(channel, message) {
      await client.publish(key(channel), message);
    },
    async subscribe(channel, listener) {
      const connection = await subscriberClient();
      const prefixed = key(channel);
      const onMessage = (received: string, message: string) => {
        if (received === prefixed) listener(message);
      };
      connection.on('message', onMessage);
      const count = subscriptionCounts.get(prefixed) ?? 0;
      subscriptionCounts.set(prefixed, count + 1);
      if (count === 0) await connection.subscribe(prefixed);
      let subscribed = true;
      return async () => {
        if (!subscribed) return;
        subscribed = false;
        connection.off('message', onMessage);
        const remaining = (subscriptionCounts.get(prefixed) ?? 1) - 1;
        subscriptionCounts.set(prefixed, remaining);
        // Redis subscriptions are per connection and channel: drop it only with its last listener.
        if (remaining === 0) await connection.unsubscribe(prefixed).catch(() => undefined);
      };
    },
    watch(channel, handlers) {
      const watch = watchRedisChannel({
        url: options.url,
        connectionOptions,
        channel: key(channel),
        handlers,
        ...(options.subscriptionStallMs === undefined ? {} : { stalledAfterMs: options.subscriptionStallMs }),
      });
      watches.add(watch);
      return Promise.resolve({
        confirm: () => watch.confirm(),
        async close() {
          watches.delete(watch);
          await watch.close();
        },
      });
    },
    async admit(request) {
      const { keys, args } = admissionScriptArguments(request, options.keyPrefix);
      return parseAdmissionReply(request, await operations.run({ kind: 'admit', keys, args }));
    },
    async settle(settlement) {
      const laidOut = settlementScriptArguments(settlement, options.keyPrefix);
      if (laidOut !== null) await operations.run({ kind: 'settle', ...laidOut });
    },
    async renewLease(lease) {
      await client.multi().zadd(key(lease.key), 'XX', Date.now() + lease.ttlMs, lease.leaseId).pexpire(key(lease.key), lease.ttlMs).exec();
    },
    async peek(request) {
      const rateKeys = request.rates.map((rate) => key(rate.key));
      const quotaKeys = request.quotas.map((quota) => key(quotaBucket(quota, request.now).bucketKey));
      const values = [...rateKeys, ...quotaKeys].length === 0 ? [] : await client.mget(...rateKeys, ...quotaKeys);
      return {
        rates: request.rates.map((rate, index) => rateStanding(rate, currentTat(parseRateState(values[index]), emissionInterval(rate), request.now), request.now)),
        quotas: request.quotas.map((quota, index) => ({ used: Number(values[rateKeys.length + index] ?? 0), resetMs: quotaBucket(quota, request.now).resetMs })),
      };
    },
    async close() {
      client.disconnect();
      limitsClient.disconnect();
      subscriber?.disconnect();
      await Promise.all([...watches].map((watch) => watch.close()));
    },
  };
}

/** KEYS: value, marker. ARGV: value, ttl ms, 1 if a marker value is expected (else absent), that value. */
const setUnlessChangedScript = `
local current = redis.call('GET', KEYS[2])
if ARGV[3] == '1' then
  if current ~= ARGV[4] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;
