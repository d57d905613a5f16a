// Admissions and settlements issued in one turn of the event loop go to Redis as one script call,
// run in the order they were issued, each answered exactly as if it had gone alone; a burst is
// split into calls of at most 64; a call that fails fails each of its operations, and the next
// turn works again. Redis's MONITOR shows what actually travelled.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AdmissionRequest } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { hasRealServices, testRedisUrl, uniqueName } from '../helpers/environment.js';
import { eventually, startTcpProxy, type TcpProxy } from '../helpers/limits-fixtures.js';
import { deleteKeys } from '../helpers/test-app.js';

const windowMs = 60_000;

function admission(userKey: string, parts: { rateLimit?: number; concurrencyLimit?: number; leaseId?: string }): AdmissionRequest {
  return {
    now: Date.now(),
    rates: [{ key: `limit:${userKey}`, limit: parts.rateLimit ?? 1000, windowMs }],
    quotas: [],
    concurrency: parts.concurrencyLimit === undefined ? null : { key: `concurrency:${userKey}`, limit: parts.concurrencyLimit, leaseId: parts.leaseId ?? randomUUID(), leaseTtlMs: windowMs },
  };
}

describe.skipIf(!hasRealServices)('Redis store: one script call per event-loop turn', () => {
  const prefix = `${uniqueName('batch')}:`;
  let store: KeyValueStore;
  let monitor: Redis;
  /** The script calls Redis ran with this suite's keys, in order. */
  const calls: string[][] = [];

  beforeAll(async () => {
    store = await createRedisStore({ url: testRedisUrl!, keyPrefix: prefix });
    monitor = await new Redis(testRedisUrl!).monitor();
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval/i.test(args[0] ?? '') && args.some((argument) => argument.startsWith(prefix))) calls.push(args);
    });
  });

  afterAll(async () => {
    monitor.disconnect();
    await store.close();
    await deleteKeys(prefix);
  });

  afterEach(() => {
    calls.length = 0;
  });

  /** Waits until MONITOR has reported `count` calls (it reports asynchronously), then a little more for any extra. */
  async function scriptCalls(count: number): Promise<string[][]> {
    await eventually(async () => expect(calls.length).toBeGreaterThanOrEqual(count), 3000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    return [...calls];
  }

  it('sends 20 admissions issued together as one call, and answers each as if it had gone alone', async () => {
    const user = randomUUID();
    const results = await Promise.all(Array.from({ length: 20 }, () => store.admit(admission(user, { rateLimit: 10 }))));

    // In the order issued: the first ten are let through with 9, 8 … 0 left; the rest are refused.
    expect(results.map((result) => result.allowed)).toEqual([...Array<boolean>(10).fill(true), ...Array<boolean>(10).fill(false)]);
    expect(results.slice(0, 10).map((result) => result.rates[0]?.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    for (const refused of results.slice(10)) expect(refused.failure).toMatchObject({ kind: 'rate', index: 0 });
    expect(await scriptCalls(1)).toHaveLength(1);
  });

  it('keeps the order of issue: a settlement before an admission frees the slot for it, one after does not', async () => {
    const user = randomUUID();
    const holder = randomUUID();
    expect((await store.admit(admission(user, { concurrencyLimit: 1, leaseId: holder }))).allowed).toBe(true);
    const [, admittedAfterRelease] = await Promise.all([
      store.settle({ quotas: [], release: { key: `concurrency:${user}`, leaseId: holder } }),
      store.admit(admission(user, { concurrencyLimit: 1 })),
    ]);
    expect(admittedAfterRelease.allowed).toBe(true);

    const other = randomUUID();
    const otherHolder = randomUUID();
    expect((await store.admit(admission(other, { concurrencyLimit: 1, leaseId: otherHolder }))).allowed).toBe(true);
    const [refusedBeforeRelease] = await Promise.all([
      store.admit(admission(other, { concurrencyLimit: 1 })),
      store.settle({ quotas: [], release: { key: `concurrency:${other}`, leaseId: otherHolder } }),
    ]);
    expect(refusedBeforeRelease).toMatchObject({ allowed: false, failure: { kind: 'concurrency' } });
    // Four turns, four calls: the two pairs each travelled together.
    expect(await scriptCalls(4)).toHaveLength(4);
  });

  it('splits a burst into calls of at most 64 operations, all answered', async () => {
    const user = randomUUID();
    const results = await Promise.all(Array.from({ length: 150 }, () => store.admit(admission(user, { rateLimit: 100 }))));
    expect(results.filter((result) => result.allowed)).toHaveLength(100);
    expect(results.slice(0, 100).every((result) => result.allowed)).toBe(true);
    expect(await scriptCalls(3)).toHaveLength(3);
  });

  describe('through a connection that is cut', () => {
    let proxy: TcpProxy;
    let proxied: KeyValueStore;

    beforeAll(async () => {
      proxy = await startTcpProxy(testRedisUrl!);
      proxied = await createRedisStore({ url: proxy.redisUrl, keyPrefix: prefix });
    });

    afterAll(async () => {
      await proxied.close();
      await proxy.close();
    });

    it('fails every operation of a call that fails, and works again on a later turn', async () => {
      const user = randomUUID();
      await proxy.cut();
      const outcomes = await Promise.allSettled([
        proxied.admit(admission(user, {})),
        proxied.settle({ quotas: [], release: { key: `concurrency:${user}`, leaseId: randomUUID() } }),
        proxied.admit(admission(user, {})),
      ]);
      expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected', 'rejected']);

      await proxy.restore();
      await eventually(async () => expect((await proxied.admit(admission(user, { rateLimit: 5 }))).allowed).toBe(true), 5000);
      // Nothing of the failed call reached Redis: the user's rate holds only what was admitted since.
      const standing = await proxied.peek({ now: Date.now(), rates: [{ key: `limit:${user}`, limit: 5, windowMs }], quotas: [] });
      expect(standing.rates[0]?.remaining).toBe(4);
    });
  });
});
