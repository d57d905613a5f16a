// Admissions and settlements issued in one turn of the event loop go to Redis as one script call,
// run in the order they were issued, each answered exactly as its own call (and as the in-memory
// twin) would answer it; a burst is split into calls of at most 64; an operation Redis refuses
// fails alone; a call that fails fails each of its operations, and the next turn works again.
// Redis's MONITOR shows what actually travelled.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quotaBucket, type AdmissionRequest, type AdmissionResult } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { createScriptBatcher } from '../../src/platform/redis-script-batch.js';
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

/** How many operations a MONITOR'd script call carried: ARGV[1], just after its keys. */
function operationCount(call: string[]): number {
  const keyCount = Number(call[2]);
  return Number(call[3 + keyCount]);
}

/** What an admission decided, without the lease-specific parts, to compare two stores' answers. */
function decision(result: AdmissionResult) {
  return { allowed: result.allowed, failure: result.failure?.kind ?? null, index: result.failure?.index ?? null, rates: result.rates.map((rate) => rate.remaining), quotas: result.quotas.map((quota) => quota.used) };
}

describe('the script batcher on its own', () => {
  it('fails every operation of a call whose script throws at once, without throwing itself', async () => {
    const batcher = createScriptBatcher(() => {
      throw new Error('no connection object');
    });
    const outcomes = await Promise.allSettled([batcher.run({ kind: 'admit', keys: ['a'], args: [1] }), batcher.run({ kind: 'settle', keys: ['b'], args: [0, ''] })]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
  });

  it('fails every operation when the answer does not have one reply per operation', async () => {
    const batcher = createScriptBatcher(() => Promise.resolve([[1, 0, 0, 0]]));
    const outcomes = await Promise.allSettled([batcher.run({ kind: 'admit', keys: ['a'], args: [1] }), batcher.run({ kind: 'admit', keys: ['b'], args: [1] })]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
  });
});

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

  /**
   * The calls that touched a key of one of `users` (each test has users of its own, so a late
   * report from another test cannot count), once MONITOR — which reports asynchronously — has
   * shown `count` of them, and a little longer for any extra.
   */
  async function scriptCalls(count: number, users: string[]): Promise<string[][]> {
    const ours = () => calls.filter((call) => call.some((argument) => users.some((user) => argument.includes(user))));
    await eventually(async () => expect(ours().length).toBeGreaterThanOrEqual(count), 3000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    return ours();
  }

  it('sends 20 admissions issued together as one call, and answers each as if it had gone alone', async () => {
    const user = randomUUID();
    const results = await Promise.all(Array.from({ length: 20 }, () => store.admit(admission(user, { rateLimit: 10 }))));

    // In the order issued: the first ten are let through with 9, 8 … 0 left; the rest are refused.
    expect(results.map((result) => result.allowed)).toEqual([...Array<boolean>(10).fill(true), ...Array<boolean>(10).fill(false)]);
    expect(results.slice(0, 10).map((result) => result.rates[0]?.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    for (const refused of results.slice(10)) expect(refused.failure).toMatchObject({ kind: 'rate', index: 0 });
    expect(await scriptCalls(1, [user])).toHaveLength(1);
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
    expect(await scriptCalls(4, [user, other])).toHaveLength(4);
  });

  it('splits a burst into calls of at most 64 operations, all answered', async () => {
    const user = randomUUID();
    const results = await Promise.all(Array.from({ length: 150 }, () => store.admit(admission(user, { rateLimit: 100 }))));
    expect(results.filter((result) => result.allowed)).toHaveLength(100);
    expect(results.slice(0, 100).every((result) => result.allowed)).toBe(true);
    // 64 + 64 + 22: the cap, not just some split.
    expect((await scriptCalls(3, [user])).map(operationCount)).toEqual([64, 64, 22]);
  });

  it('fails only the operation Redis refuses; the others in its call are answered and stand', async () => {
    const [first, poisoned, last] = [randomUUID(), randomUUID(), randomUUID()];
    // A rate key of the wrong type makes that admission's GET fail with WRONGTYPE inside the script.
    const raw = new Redis(testRedisUrl!);
    try {
      await raw.lpush(`${prefix}limit:${poisoned}`, 'not a rate');
    } finally {
      raw.disconnect();
    }
    const outcomes = await Promise.allSettled([
      store.admit(admission(first, { rateLimit: 5 })),
      store.admit(admission(poisoned, { rateLimit: 5 })),
      store.admit(admission(last, { rateLimit: 5 })),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((outcomes[1] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
    expect(await scriptCalls(1, [first, poisoned, last])).toHaveLength(1);
    // What the others did is kept: one request of five is spent for each.
    const standing = await store.peek({ now: Date.now(), rates: [first, last].map((user) => ({ key: `limit:${user}`, limit: 5, windowMs })), quotas: [] });
    expect(standing.rates.map((rate) => rate.remaining)).toEqual([4, 4]);
  });

  it('answers a turn mixing rates, quotas, leases, preconditions and settlements as the in-memory twin answers them one by one', async () => {
    const user = randomUUID();
    const now = Date.now();
    const quota = { key: `quota:day:${user}`, limit: 100, windowMs: 86_400_000 };
    const stateKey = `state:${user}`;
    const request = (leaseId: string, expected: string): AdmissionRequest => ({
      now,
      rates: [{ key: `limit:${user}`, limit: 3, windowMs }],
      quotas: [{ ...quota, reserve: 40 }],
      concurrency: { key: `concurrency:${user}`, limit: 2, leaseId, leaseTtlMs: windowMs },
      precondition: { keys: [stateKey], values: [expected] },
    });
    const release = (leaseId: string, delta: number) => ({ quotas: [{ bucketKey: quotaBucket(quota, now).bucketKey, delta, ttlMs: 86_400_000 }], release: { key: `concurrency:${user}`, leaseId } });
    // Admitted, admitted, refused (two leases held), a settlement (10 used of 40), admitted (the
    // third request of three), refused (precondition), refused (rate).
    const script: Array<(target: KeyValueStore) => Promise<AdmissionResult | void>> = [
      (target) => target.admit(request('lease-1', 'v1')),
      (target) => target.admit(request('lease-2', 'v1')),
      (target) => target.admit(request('lease-3', 'v1')),
      (target) => target.settle(release('lease-1', -30)),
      (target) => target.admit(request('lease-4', 'v1')),
      (target) => target.admit(request('lease-5', 'v2')),
      (target) => target.admit(request('lease-6', 'v1')),
    ];
    const twin = createMemoryStore();
    try {
      await twin.set(stateKey, 'v1');
      await store.set(stateKey, 'v1');
      const expected: Array<AdmissionResult | void> = [];
      for (const step of script) expected.push(await step(twin));
      const batched = await Promise.all(script.map((step) => step(store)));

      const decisions = (results: Array<AdmissionResult | void>) => results.map((result) => (result === undefined ? 'settled' : decision(result)));
      expect(decisions(batched)).toEqual(decisions(expected));
      expect(decisions(batched).map((entry) => (entry === 'settled' ? entry : entry.failure ?? 'admitted'))).toEqual(['admitted', 'admitted', 'concurrency', 'settled', 'admitted', 'precondition', 'rate']);
      expect(await scriptCalls(1, [user])).toHaveLength(1);
    } finally {
      await twin.close();
    }
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
