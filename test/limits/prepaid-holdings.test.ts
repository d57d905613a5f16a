// The prepaid admissions an instance holds, on their own: the in-process store stands in for Redis
// (the same admission algorithm), and the change feed is one the test drives — current or not,
// a change naming entries, a break — so each race the holdings must win is played out in order.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createPrepaidAdmissions, prepaidCallerKey } from '../../src/limits/prepaid-admissions.js';
import type { AdmissionRequest } from '../../src/platform/admission.js';
import type { ChangeFeed } from '../../src/platform/change-feed.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { awaitRoomInWindow } from '../helpers/limits-fixtures.js';

/** A change feed whose state the test sets. */
function drivenFeed() {
  const listeners: Array<(message: string | null) => void> = [];
  let epoch = 0;
  const feed: ChangeFeed & { current: boolean; change(message: string | null): void } = {
    current: true,
    isCurrent: () => feed.current,
    epoch: () => epoch,
    onChange: (listener) => listeners.push(listener),
    close: () => Promise.resolve(),
    change(message) {
      epoch += 1;
      for (const listener of listeners) listener(message);
    },
  };
  return feed;
}

const minuteMs = 60_000;

describe('prepaid admissions held by an instance', () => {
  const opened: Array<{ close(): Promise<void> }> = [];

  afterEach(async () => {
    vi.useRealTimers();
    for (const each of opened.splice(0)) await each.close();
  });

  async function setUp(options: { answerDelayMs?: number } = {}) {
    const memory: KeyValueStore = createMemoryStore();
    // Redis answering late: the charge is made at once, its answer comes answerDelayMs after.
    const answerDelayMs = options.answerDelayMs ?? 0;
    const store: KeyValueStore =
      answerDelayMs === 0
        ? memory
        : Object.assign(Object.create(memory) as KeyValueStore, {
            admit: async (request: AdmissionRequest) => {
              const result = await memory.admit(request);
              await new Promise((resolve) => setTimeout(resolve, answerDelayMs));
              return result;
            },
          });
    const feed = drivenFeed();
    const outcomes: string[] = [];
    const holdings = createPrepaidAdmissions({ store, feed, onGiveBackFailed: () => undefined, counted: (outcome) => outcomes.push(outcome) });
    opened.push(holdings, memory);
    const userId = randomUUID();
    const precondition = { keys: [`auth:key:${userId}`, `auth:user:v2:${userId}`], values: ['key state', 'user state'] };
    // The credential's state as the store holds it: what the admission's precondition checks.
    for (const [index, key] of precondition.keys.entries()) await store.set(key, precondition.values[index]!);
    const caller = prepaidCallerKey(userId, '192.0.2.1', precondition);
    const request = (now = Date.now()): AdmissionRequest => ({
      now,
      rates: [{ key: `limit:user:${userId}`, limit: 100, windowMs: minuteMs }],
      quotas: [{ key: `quota:minute:${userId}`, limit: 10_000, windowMs: minuteMs, reserve: 20 }],
      concurrency: { key: `concurrency:${userId}`, limit: 10, leaseId: randomUUID(), leaseTtlMs: 60_000 },
      precondition,
    });
    const remaining = async () => {
      const peeked = await store.peek({ now: Date.now(), rates: request().rates, quotas: request().quotas });
      return { requests: peeked.rates[0]?.remaining, tokens: peeked.quotas[0]?.used };
    };
    /** Admits a request that asks for the next to be prepaid, as the limits service does, and hands over the answer. */
    const admitAsking = async () => {
      const asking = request();
      // The first call marks a caller not seen before as coming back; for one seen already, it asks.
      asking.prepay = holdings.prepayFor(caller, asking.now) ?? holdings.prepayFor(caller, asking.now);
      expect(asking.prepay).not.toBeNull();
      const result = await store.admit(asking);
      return { asking, result, handOver: () => holdings.answered(caller, asking, result) };
    };
    return { store, feed, outcomes, holdings, userId, caller, request, remaining, admitAsking };
  }

  it('hands the prepaid admission to the caller’s next request, once', async () => {
    const { holdings, caller, request, admitAsking, outcomes } = await setUp();
    const { handOver } = await admitAsking();
    handOver();
    const prepaid = holdings.take(caller, request());
    expect(prepaid?.standing.rates[0]?.remaining).toBe(98);
    expect(holdings.take(caller, request())).toBeNull();
    expect(outcomes).toEqual(['used']);
  });

  it('asks for one only for a caller seen within the lifetime, and no more than two at a time', async () => {
    const { holdings, caller } = await setUp();
    const now = Date.now();
    expect(holdings.prepayFor(caller, now)).toBeNull();
    expect(holdings.prepayFor(caller, now + 10)).not.toBeNull();
    expect(holdings.prepayFor(caller, now + 20)).not.toBeNull();
    // Two asked and not yet answered: no third ask.
    expect(holdings.prepayFor(caller, now + 30)).toBeNull();
    const stranger = prepaidCallerKey(randomUUID(), '192.0.2.1', { keys: [], values: [] });
    expect(holdings.prepayFor(stranger, now)).toBeNull();
    expect(holdings.prepayFor(stranger, now + 6_000)).toBeNull();
  });

  it('does not use what it holds while the feed is not current, and uses it once the feed is again', async () => {
    const { holdings, caller, request, admitAsking, feed } = await setUp();
    (await admitAsking()).handOver();
    feed.current = false;
    expect(holdings.take(caller, request())).toBeNull();
    feed.current = true;
    expect(holdings.take(caller, request())).not.toBeNull();
  });

  it('asks for nothing while the feed is not current', async () => {
    const { holdings, caller, feed } = await setUp();
    const now = Date.now();
    holdings.prepayFor(caller, now);
    feed.current = false;
    expect(holdings.prepayFor(caller, now + 1)).toBeNull();
  });

  it('gives back a grant that comes after a change, though the change named another caller’s entries: it may predate the change', async () => {
    const { holdings, caller, request, admitAsking, feed, remaining, outcomes } = await setUp();
    const { handOver } = await admitAsking();
    const charged = await remaining();
    feed.change('auth:key:someone-else');
    handOver();
    expect(holdings.take(caller, request())).toBeNull();
    expect(outcomes).toEqual(['given_back']);
    await expect.poll(remaining).toEqual({ requests: (charged.requests ?? 0) + 1, tokens: (charged.tokens ?? 0) - 20 });
  });

  it('gives back, on a change, only what was judged on an entry the change names', async () => {
    const { holdings, userId, caller, request, admitAsking, feed, outcomes } = await setUp();
    (await admitAsking()).handOver();
    feed.change('auth:key:someone-else\nauth:user:v2:someone-else');
    expect(outcomes).toEqual([]);
    feed.change(`auth:session:x\nauth:user:v2:${userId}`);
    expect(outcomes).toEqual(['given_back']);
    expect(holdings.take(caller, request())).toBeNull();
  });

  it('gives back everything it holds when the subscription breaks', async () => {
    const { holdings, caller, request, admitAsking, feed, outcomes } = await setUp();
    (await admitAsking()).handOver();
    feed.change(null);
    expect(outcomes).toEqual(['given_back']);
    expect(holdings.take(caller, request())).toBeNull();
  });

  it('gives back, instead of using, one charged in another minute’s quota window or past its lifetime', async () => {
    const { holdings, caller, request, admitAsking, outcomes } = await setUp();
    (await admitAsking()).handOver();
    expect(holdings.take(caller, request(Date.now() + minuteMs))).toBeNull();
    expect(outcomes).toEqual(['given_back']);
  });

  it('gives back, instead of using, one charged with a smaller reservation than the request’s: the quota must count what it may use', async () => {
    const { holdings, caller, request, admitAsking, outcomes } = await setUp();
    (await admitAsking()).handOver();
    const larger = request();
    larger.quotas = larger.quotas.map((quota) => ({ ...quota, reserve: quota.reserve + 1 }));
    expect(holdings.take(caller, larger)).toBeNull();
    expect(outcomes).toEqual(['given_back']);
  });

  it('charges the next one alone after one is used (when its request ends), and holds it', async () => {
    const { holdings, caller, request, admitAsking, remaining } = await setUp();
    (await admitAsking()).handOver();
    const used = holdings.take(caller, request());
    expect(used).not.toBeNull();
    const before = await remaining();
    holdings.prepayNext(caller, request());
    await expect.poll(remaining).toEqual({ requests: (before.requests ?? 0) - 1, tokens: (before.tokens ?? 0) + 20 });
    await expect.poll(() => holdings.take(caller, request()) !== null).toBe(true);
  });

  it('hands the background charge still on its way to one request to wait for, and holds it once answered', async () => {
    const { holdings, caller, request, admitAsking } = await setUp();
    (await admitAsking()).handOver();
    expect(holdings.take(caller, request())).not.toBeNull();
    expect(holdings.claimAnswering(caller)).toBeNull();
    holdings.prepayNext(caller, request());
    const answering = holdings.claimAnswering(caller);
    expect(answering).not.toBeNull();
    // A busy caller's other requests do not wait too: they ask Redis themselves.
    expect(holdings.claimAnswering(caller)).toBeNull();
    expect(holdings.take(caller, request())).toBeNull();
    await answering;
    expect(holdings.take(caller, request())).not.toBeNull();
  });

  it('asks for a second one when a coming-back caller’s request ends, so a request sent at once finds one held', async () => {
    const { holdings, caller, admitAsking, request, remaining, outcomes } = await setUp();
    const { asking, handOver } = await admitAsking();
    handOver();
    const before = await remaining();
    // The request that asked for the first one ends: one more is charged, in the background.
    holdings.ended(caller, { ...asking, now: Date.now() }, true);
    await holdings.claimAnswering(caller);
    expect(await remaining()).toEqual({ requests: (before.requests ?? 0) - 1, tokens: (before.tokens ?? 0) + 20 });
    expect(holdings.take(caller, request())).not.toBeNull();
    expect(holdings.take(caller, request())).not.toBeNull();
    expect(holdings.take(caller, request())).toBeNull();
    expect(outcomes).toEqual(['used', 'used']);
  });

  it('asks for none when a request ends that neither used one nor was granted one, nor beyond two held', async () => {
    const { holdings, caller, admitAsking, request, remaining } = await setUp();
    const before = await remaining();
    // A caller's request admitted on a full check (not coming back) ends: nothing is charged ahead.
    holdings.ended(caller, request(), false);
    expect(holdings.claimAnswering(caller)).toBeNull();
    expect(await remaining()).toEqual(before);
    // Two held already: the end of a request that used neither asks for no third.
    const { asking, handOver } = await admitAsking();
    handOver();
    holdings.ended(caller, { ...asking, now: Date.now() }, true);
    await holdings.claimAnswering(caller);
    holdings.ended(caller, { ...asking, now: Date.now() }, true);
    expect(holdings.claimAnswering(caller)).toBeNull();
    expect(holdings.take(caller, request())).not.toBeNull();
    expect(holdings.take(caller, request())).not.toBeNull();
    expect(holdings.take(caller, request())).toBeNull();
  });

  it('hands out the oldest that fits, and gives back on the way one that does not', async () => {
    const { holdings, caller, admitAsking, request, outcomes } = await setUp();
    const { asking, handOver } = await admitAsking();
    handOver();
    // The second is charged for a larger reservation (a request that ended asking for more tokens).
    const larger = (base: AdmissionRequest): AdmissionRequest => ({ ...base, quotas: base.quotas.map((quota) => ({ ...quota, reserve: 30 })) });
    holdings.ended(caller, larger({ ...asking, now: Date.now() }), true);
    await holdings.claimAnswering(caller);
    // A request reserving 30 cannot use the first (charged 20): it is given back, and the second used.
    expect(holdings.take(caller, larger(request()))?.reserveTokens).toBe(30);
    expect(outcomes).toEqual(['given_back', 'used']);
    expect(holdings.take(caller, request())).toBeNull();
  });

  it('gives back both it holds for a caller when a change names the caller’s entries', async () => {
    const { holdings, caller, admitAsking, request, remaining, userId, feed, outcomes } = await setUp();
    const before = await remaining();
    const { asking, handOver } = await admitAsking();
    handOver();
    holdings.ended(caller, { ...asking, now: Date.now() }, true);
    await holdings.claimAnswering(caller);
    feed.change(`auth:user:v2:${userId}`);
    expect(outcomes).toEqual(['given_back', 'given_back']);
    expect(holdings.take(caller, request())).toBeNull();
    // What stays charged is the request that asked (its own charge): both prepaid ones are undone.
    await expect.poll(remaining).toEqual({ requests: (before.requests ?? 0) - 1, tokens: (before.tokens ?? 0) + 20 });
  });

  it('counts a caller as coming back from the end of its last request, however long that ran', async () => {
    const { holdings, caller, request } = await setUp();
    const start = Date.now();
    expect(holdings.prepayFor(caller, start)).toBeNull();
    // A stream that ran 20 s, four times a prepaid admission's lifetime; the next request 1 s after its end.
    holdings.ended(caller, request(start + 20_000), false);
    expect(holdings.prepayFor(caller, start + 21_000)).not.toBeNull();
  });

  it('counts a caller as coming back from a request admitted on a prepaid admission too', async () => {
    // The charge and the take below fall in one minute's quota window.
    await awaitRoomInWindow(minuteMs, 4_000);
    const { holdings, caller, request, admitAsking } = await setUp();
    const { asking, handOver } = await admitAsking();
    handOver();
    expect(holdings.take(caller, request(asking.now + 3_000))).not.toBeNull();
    // 6 s after the caller was last seen asking, 3 s after the request it took.
    expect(holdings.prepayFor(caller, asking.now + 6_000)).not.toBeNull();
  });

  it('steps a rate back as of each try of a give-back: a charge that wore off while Redis was away is not given back on top of newer requests', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval', 'Date'] });
    const { store, feed, request, admitAsking } = await setUp();
    (await admitAsking()).handOver();
    // Redis away for the give-back's first try (the rate: 100 a minute, one request per 600 ms).
    const settle = store.settle.bind(store);
    let tries = 0;
    store.settle = (settlement) => {
      tries += 1;
      return tries === 1 ? Promise.reject(new Error('Connection is closed.')) : settle(settlement);
    };
    feed.change(null);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(tries).toBe(1);
    // The prepaid charge has worn off by now; the caller comes back with three requests, charged anew.
    for (let index = 0; index < 3; index += 1) expect((await store.admit({ ...request(), precondition: null })).allowed).toBe(true);
    const rate = request().rates;
    const before = (await store.peek({ now: Date.now(), rates: rate, quotas: [] })).rates[0]!;
    await vi.advanceTimersByTimeAsync(1_600);
    expect(tries).toBe(2);
    const after = (await store.peek({ now: Date.now(), rates: rate, quotas: [] })).rates[0]!;
    // 1.6 s passed and nothing was stepped back; a try as of the first one's time would take off 600 ms more.
    expect(before.resetMs - after.resetMs).toBe(1_600);
  });

  it('gives back what it holds when it closes', async () => {
    const { holdings, admitAsking, remaining, outcomes } = await setUp();
    const { handOver } = await admitAsking();
    const charged = await remaining();
    handOver();
    await holdings.close();
    expect(outcomes).toEqual(['given_back']);
    expect(await remaining()).toEqual({ requests: (charged.requests ?? 0) + 1, tokens: (charged.tokens ?? 0) - 20 });
  });

  it('waits, when it closes, for a charge still on its way, and gives it back: the store may close next', async () => {
    const { holdings, caller, request, admitAsking, remaining, outcomes } = await setUp({ answerDelayMs: 200 });
    (await admitAsking()).handOver();
    expect(holdings.take(caller, request())).not.toBeNull();
    const before = await remaining();
    holdings.prepayNext(caller, request());
    // Charged in the store at once; its answer is on its way when the instance shuts down.
    await expect.poll(remaining).toEqual({ requests: (before.requests ?? 0) - 1, tokens: (before.tokens ?? 0) + 20 });
    await holdings.close();
    expect(outcomes.at(-1)).toBe('given_back');
    expect(await remaining()).toEqual(before);
  });
});
