// The prepaid charge of the admission algorithm, on the in-memory store (the JS twin) and on Redis
// (the Lua script): an admission may also charge the caller's next request in advance, but only
// while a tenth of every rate and quota would be left after it and at most half the concurrency
// cap would be in use; a prepaid admission given back leaves the limits as if it was never charged.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AdmissionRequest, ConcurrencyCheck, QuotaCheck, RateCheck } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { minuteMs, minuteStart, storeForSuite, storeKinds } from '../helpers/store-fixtures.js';

describe.each(storeKinds)('prepaid admissions on the %s store', (kind) => {
  let store: KeyValueStore;
  storeForSuite(kind, 'prepaid', (opened) => (store = opened));

  /** One caller's limits: a rate, a token quota and a concurrency cap, each under fresh keys. */
  function caller(limits: { requests: number; tokens: number; concurrent: number }) {
    const id = randomUUID();
    const rate: RateCheck = { key: `rate:${id}`, limit: limits.requests, windowMs: minuteMs };
    const quota = (reserve: number): QuotaCheck => ({ key: `quota:${id}`, limit: limits.tokens, windowMs: minuteMs, reserve });
    const concurrency = (leaseId: string): ConcurrencyCheck => ({ key: `concurrency:${id}`, limit: limits.concurrent, leaseId, leaseTtlMs: 60_000 });
    const admission = (now: number, reserve: number, prepay: AdmissionRequest['prepay'] = null): AdmissionRequest => ({
      now,
      rates: [rate],
      quotas: [quota(reserve)],
      concurrency: concurrency(randomUUID()),
      prepay,
    });
    const standing = async (now: number) => {
      const peeked = await store.peek({ now, rates: [rate], quotas: [quota(0)] });
      return { remaining: peeked.rates[0]?.remaining, used: peeked.quotas[0]?.used };
    };
    return { rate, quota, concurrency, admission, standing };
  }

  it('charges the next request with this one while the caller is far from every limit, and reports where each limit stands after it', async () => {
    const now = minuteStart(1000);
    const { admission, standing } = caller({ requests: 100, tokens: 10_000, concurrent: 4 });
    const result = await store.admit(admission(now, 50, { leaseId: 'prepaid', alone: false }));
    expect(result.allowed).toBe(true);
    expect(result.rates[0]?.remaining).toBe(99);
    expect(result.quotas[0]?.used).toBe(50);
    expect(result.prepaid?.rates[0]?.remaining).toBe(98);
    expect(result.prepaid?.quotas[0]?.used).toBe(100);
    expect(await standing(now)).toEqual({ remaining: 98, used: 100 });
  });

  it('grants no prepaid admission when less than a tenth of the rate would be left after it, and charges only the request', async () => {
    const now = minuteStart(1000);
    const { admission, standing } = caller({ requests: 20, tokens: 10_000, concurrent: 100 });
    // 20 a minute: a tenth is 2. After 16 requests, the 17th leaves 3 and a prepaid one would leave 2.
    for (let index = 0; index < 16; index += 1) expect((await store.admit(admission(now, 1))).allowed).toBe(true);
    const granted = await store.admit(admission(now, 1, { leaseId: randomUUID(), alone: false }));
    expect(granted.prepaid?.rates[0]?.remaining).toBe(2);
    const refusedPrepay = await store.admit(admission(now, 1, { leaseId: randomUUID(), alone: false }));
    expect(refusedPrepay.allowed).toBe(true);
    expect(refusedPrepay.prepaid).toBeNull();
    expect(await standing(now)).toEqual({ remaining: 1, used: 19 });
  });

  it('grants no prepaid admission when less than a tenth of the token quota would be left after it', async () => {
    const now = minuteStart(1000);
    const { admission, standing } = caller({ requests: 100, tokens: 1000, concurrent: 100 });
    // 1000 tokens: a tenth is 100. 400 + 400 of this request and the prepaid one leaves 200: granted.
    expect((await store.admit(admission(now, 400, { leaseId: randomUUID(), alone: false }))).prepaid).not.toBeNull();
    // 800 used: this request's 50 and a prepaid 50 would leave 100 — still a tenth; 51 would not.
    expect((await store.admit(admission(now, 51, { leaseId: randomUUID(), alone: false }))).prepaid).toBeNull();
    expect(await standing(now)).toEqual({ remaining: 97, used: 851 });
  });

  it('grants a prepaid admission only while at most half the concurrency cap is in use with it, its lease counted', async () => {
    const now = minuteStart(1000);
    const { admission, concurrency, rate, quota } = caller({ requests: 100, tokens: 10_000, concurrent: 4 });
    const first = await store.admit(admission(now, 1, { leaseId: 'prepaid-1', alone: false }));
    expect(first.prepaid).not.toBeNull();
    // Two leases are held now (the request's and the prepaid one's): a third and fourth fit, a fifth does not.
    const second = await store.admit(admission(now, 1, { leaseId: 'prepaid-2', alone: false }));
    expect(second.allowed).toBe(true);
    expect(second.prepaid).toBeNull();
    expect((await store.admit({ now, rates: [rate], quotas: [quota(1)], concurrency: concurrency('fourth') })).allowed).toBe(true);
    expect((await store.admit({ now, rates: [rate], quotas: [quota(1)], concurrency: concurrency('fifth') })).failure?.kind).toBe('concurrency');
  });

  it('charges a prepaid admission alone when asked, and nothing at all when it is not granted', async () => {
    const now = minuteStart(1000);
    const { admission, standing } = caller({ requests: 10, tokens: 10_000, concurrent: 100 });
    // 10 a minute: a tenth is 1. Nine prepaid alone leave 1; a tenth would leave none.
    for (let index = 1; index <= 9; index += 1) {
      const result = await store.admit(admission(now, 10, { leaseId: randomUUID(), alone: true }));
      expect(result.allowed).toBe(true);
      expect(result.rates).toEqual([]);
      expect(result.prepaid?.rates[0]?.remaining).toBe(10 - index);
      expect(result.prepaid?.quotas[0]?.used).toBe(10 * index);
    }
    const notGranted = await store.admit(admission(now, 10, { leaseId: randomUUID(), alone: true }));
    expect(notGranted.allowed).toBe(false);
    expect(notGranted.failure).toBeNull();
    expect(notGranted.prepaid).toBeNull();
    expect(await standing(now)).toEqual({ remaining: 1, used: 90 });
  });

  it('leaves the limits as if it was never charged when a prepaid admission is given back unused, once however often it is sent', async () => {
    const now = minuteStart(1000);
    const { admission, standing, rate, concurrency } = caller({ requests: 100, tokens: 10_000, concurrent: 4 });
    expect((await store.admit(admission(now, 30))).allowed).toBe(true);
    const before = await standing(now);
    const granted = await store.admit(admission(now, 30, { leaseId: 'given-back', alone: true }));
    expect(granted.prepaid).not.toBeNull();
    expect(await standing(now)).toEqual({ remaining: 98, used: 60 });
    const giveBack = {
      quotas: (granted.prepaid?.quotas ?? []).map((entry) => ({ bucketKey: entry.bucketKey, delta: -30, ttlMs: entry.resetMs + 60_000 })),
      release: { key: concurrency('').key, leaseId: 'given-back' },
      rewind: { now, rates: [{ key: rate.key, grantTat: now + (granted.prepaid?.rates[0]?.resetMs ?? 0) - 1, interval: minuteMs / 100 }] },
      onlyIfLeased: true,
    };
    await store.settle(giveBack);
    expect(await standing(now)).toEqual(before);
    await store.settle(giveBack);
    expect(await standing(now)).toEqual(before);
    // Its slot is free again: with one request holding a lease, three more fit under the cap of 4.
    for (let index = 0; index < 3; index += 1) expect((await store.admit(admission(now, 1))).allowed).toBe(true);
    expect((await store.admit(admission(now, 1))).failure?.kind).toBe('concurrency');
  });

  it('steps a rate back only by the part of a prepaid charge not yet worn off: given back late, it hands out nothing', async () => {
    const now = minuteStart(1000);
    const intervalMs = minuteMs / 10;
    const { admission, rate, concurrency } = caller({ requests: 10, tokens: 10_000, concurrent: 100 });
    const granted = await store.admit(admission(now, 1, { leaseId: 'worn-off', alone: false }));
    const grantTat = now + (granted.prepaid?.rates[0]?.resetMs ?? 0) - 1;
    // Two emissions later both charges have worn off; the caller then spends the whole burst.
    const later = now + 2 * intervalMs + 1;
    for (let index = 0; index < 10; index += 1) expect((await store.admit(admission(later, 1))).allowed, `request ${index}`).toBe(true);
    expect((await store.admit(admission(later, 1))).failure?.kind).toBe('rate');
    await store.settle({ quotas: [], release: { key: concurrency('').key, leaseId: 'worn-off' }, rewind: { now: later, rates: [{ key: rate.key, grantTat, interval: intervalMs }] }, onlyIfLeased: true });
    expect((await store.admit(admission(later, 1))).failure?.kind).toBe('rate');
  });

  it('steps a rate back by nothing under a limit changed since the charge', async () => {
    const now = minuteStart(1000);
    const { admission, rate, concurrency, standing } = caller({ requests: 100, tokens: 10_000, concurrent: 100 });
    const granted = await store.admit(admission(now, 1, { leaseId: 'old-limit', alone: true }));
    const before = await standing(now);
    await store.settle({
      quotas: [],
      release: { key: concurrency('').key, leaseId: 'old-limit' },
      rewind: { now, rates: [{ key: rate.key, grantTat: now + (granted.prepaid?.rates[0]?.resetMs ?? 0) - 1, interval: minuteMs / 50 }] },
      onlyIfLeased: true,
    });
    expect(await standing(now)).toEqual(before);
  });

  it('charges nothing, prepaid or not, for a request that is refused', async () => {
    const now = minuteStart(1000);
    const { admission, standing } = caller({ requests: 2, tokens: 10_000, concurrent: 4 });
    expect((await store.admit(admission(now, 5))).allowed).toBe(true);
    expect((await store.admit(admission(now, 5))).allowed).toBe(true);
    const refused = await store.admit(admission(now, 5, { leaseId: randomUUID(), alone: false }));
    expect(refused.failure?.kind).toBe('rate');
    expect(refused.prepaid ?? null).toBeNull();
    expect(await standing(now)).toEqual({ remaining: 0, used: 10 });
  });
});
