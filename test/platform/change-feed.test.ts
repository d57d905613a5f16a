// The change feed: an instance counts as current only while a confirmation sent through its
// subscription within the trust window has come back, and an announcement returns only after every
// current instance has seen it. On Redis, through a TCP proxy that can stall or cut the connection:
// a stalled subscription stops counting as current within the window, and a cut one at once; one
// whose connection goes silent for good (half-open) is dropped and made again.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import { announceChange, startChangeFeed, type ChangeFeed } from '../../src/platform/change-feed.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { testRedisUrl, uniqueName } from '../helpers/environment.js';
import { eventually, sleep, startTcpProxy, type TcpProxy } from '../helpers/limits-fixtures.js';

const trustWindowMs = 200;
const confirmEveryMs = 20;

function expectCurrent(feed: ChangeFeed, current: boolean, withinMs = 3000): Promise<void> {
  return eventually(() => {
    expect(feed.isCurrent()).toBe(current);
    return Promise.resolve();
  }, withinMs);
}

describe('the change feed on the in-process store', () => {
  it('counts as current once started, and hands an announced change to every listener before the announcement returns', async () => {
    const store = createMemoryStore();
    const feeds = [await startChangeFeed({ store, channel: 'changes', trustWindowMs, confirmEveryMs })];
    feeds.push(await startChangeFeed({ store, channel: 'changes', trustWindowMs, confirmEveryMs }));
    for (const feed of feeds) await expectCurrent(feed, true);
    const seen: number[] = [];
    feeds.forEach((feed, index) => feed.onChange(() => seen.push(index)));
    const epochs = feeds.map((feed) => feed.epoch());
    const started = performance.now();
    await announceChange(store, { channel: 'changes', trustWindowMs }, 'user:1');
    expect(performance.now() - started).toBeGreaterThanOrEqual(trustWindowMs - 1);
    expect(seen.sort()).toEqual([0, 1]);
    feeds.forEach((feed, index) => expect(feed.epoch()).toBe(epochs[index]! + 1));
    for (const feed of feeds) await feed.close();
    expect(feeds[0]!.isCurrent()).toBe(false);
    await store.close();
  });
});

const STALL_MS = 2_000;

describe.skipIf(testRedisUrl === null)('the change feed on Redis', () => {
  const prefix = `${uniqueName('change-feed')}:`;
  let proxy: TcpProxy;
  let watched: KeyValueStore;
  let direct: KeyValueStore;
  let feed: ChangeFeed;

  beforeAll(async () => {
    proxy = await startTcpProxy(testRedisUrl!);
    // A shorter stall than production's (stalledConfirmationMs, 10 s), so the half-open case is quick to play out.
    watched = await createRedisStore({ url: proxy.redisUrl, keyPrefix: prefix, subscriptionStallMs: STALL_MS });
    direct = await createRedisStore({ url: testRedisUrl!, keyPrefix: prefix });
    feed = await startChangeFeed({ store: watched, channel: 'changes', trustWindowMs, confirmEveryMs });
  });

  afterEach(async () => {
    proxy.setDelay(0);
    await proxy.restore();
    await expectCurrent(feed, true);
  });

  afterAll(async () => {
    await feed.close();
    await watched.close();
    await direct.close();
    await proxy.close();
  });

  it('hands a change announced on another instance to this one before the announcement returns', async () => {
    await expectCurrent(feed, true);
    const seen: string[] = [];
    feed.onChange(() => seen.push('change'));
    const epoch = feed.epoch();
    await announceChange(direct, { channel: 'changes', trustWindowMs }, 'key:1');
    expect(seen).toEqual(['change']);
    expect(feed.epoch()).toBe(epoch + 1);
  });

  it('stops counting as current within the trust window when its confirmations stop coming back, and counts again once they do', async () => {
    await expectCurrent(feed, true);
    proxy.setDelay(1500);
    // The last confirmation sent before the stall is at most confirmEveryMs old when it begins.
    await sleep(trustWindowMs + 2 * confirmEveryMs);
    expect(feed.isCurrent()).toBe(false);
    proxy.setDelay(0);
    await expectCurrent(feed, true);
  });

  it('makes its subscription again when a confirmation never comes back on a connection that never breaks (half-open), and hears changes again', async () => {
    await expectCurrent(feed, true);
    let changes = 0;
    feed.onChange(() => (changes += 1));
    proxy.blackHoleOpenConnections();
    await sleep(trustWindowMs + 2 * confirmEveryMs);
    expect(feed.isCurrent()).toBe(false);
    // Dropped and made again once a PING has gone unanswered for STALL_MS: the drop is a break.
    await expectCurrent(feed, true, STALL_MS + 3_000);
    expect(changes).toBeGreaterThan(0);
    const before = changes;
    await announceChange(direct, { channel: 'changes', trustWindowMs }, 'after the stall');
    expect(changes).toBe(before + 1);
  });

  it('stops counting as current the moment its subscription breaks, reports the break as a change, and resubscribes', async () => {
    await expectCurrent(feed, true);
    let changes = 0;
    feed.onChange(() => (changes += 1));
    const epoch = feed.epoch();
    await proxy.cut();
    await eventually(() => {
      expect(changes).toBeGreaterThan(0);
      return Promise.resolve();
    });
    expect(feed.isCurrent()).toBe(false);
    expect(feed.epoch()).toBeGreaterThan(epoch);
    // Published while it is cut: lost to it, which the break already stands for.
    await direct.publish('changes', 'lost');
    await proxy.restore();
    await expectCurrent(feed, true);
    const before = changes;
    await announceChange(direct, { channel: 'changes', trustWindowMs }, 'after the break');
    expect(changes).toBe(before + 1);
  });
});
