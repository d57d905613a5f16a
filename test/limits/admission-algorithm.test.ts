// The admission algorithm on its own, with the clock in the test's hands: GCRA request rates (a burst
// of `limit`, then budget back at the window's pace, no second burst at a window's edge), token
// quotas (reserve, refuse once spent, settle), concurrency leases, all-or-nothing — once on the
// in-memory store (the JS twin) and once on Redis (the Lua script), and then both side by side on
// the same script of operations, so the two are proven to agree. Also the client's IP bucket.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { effectiveLimits, ipBucket } from '../../src/limits/effective-limits.js';
import type { AdmissionRequest, AdmissionResult, ConcurrencyCheck, QuotaCheck, RateCheck } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { parseConfig } from '../../src/config.js';
import { testRedisUrl, uniqueName } from '../helpers/environment.js';
import { deleteKeys } from '../helpers/test-app.js';
import { minuteMs, minuteStart, openStore, storeForSuite, storeKinds } from '../helpers/store-fixtures.js';

function rate(key: string, limit: number, windowMs: number): RateCheck {
  return { key, limit, windowMs };
}

function request(now: number, parts: { rates?: RateCheck[]; quotas?: QuotaCheck[]; concurrency?: ConcurrencyCheck | null }): AdmissionRequest {
  return { now, rates: parts.rates ?? [], quotas: parts.quotas ?? [], concurrency: parts.concurrency ?? null };
}

describe('ipBucket', () => {
  it('keeps an IPv4 address as it is, one bucket per address', () => {
    expect(ipBucket('203.0.113.7')).toBe('203.0.113.7');
    expect(ipBucket('203.0.113.8')).not.toBe(ipBucket('203.0.113.7'));
  });

  it('counts an IPv4-mapped IPv6 address as the IPv4 address, however it is written', () => {
    expect(ipBucket('::ffff:203.0.113.7')).toBe(ipBucket('203.0.113.7'));
    expect(ipBucket('::FFFF:203.0.113.7')).toBe(ipBucket('203.0.113.7'));
    expect(ipBucket('0:0:0:0:0:ffff:203.0.113.7')).toBe(ipBucket('203.0.113.7'));
    expect(ipBucket('::ffff:cb00:7107')).toBe(ipBucket('203.0.113.7'));
    // Two different IPv4 clients never share a bucket, in any spelling.
    expect(ipBucket('0:0:0:0:0:ffff:203.0.113.7')).not.toBe(ipBucket('0:0:0:0:0:ffff:198.51.100.1'));
  });

  it('puts every spelling of addresses in one /64 into one bucket', () => {
    const bucket = ipBucket('2001:db8:1:2::1');
    for (const address of [
      '2001:db8:1:2::',
      '2001:db8:1:2:ffff:ffff:ffff:fffe',
      '2001:0db8:0001:0002:0000:0000:0000:0001',
      '2001:DB8:1:2:0:0:0:abcd',
      '2001:db8:1:2:a::b',
    ]) {
      expect(ipBucket(address), address).toBe(bucket);
    }
    expect(ipBucket('2001:db8::1')).toBe(ipBucket('2001:db8:0:0:1::'));
    expect(ipBucket('2001:db8::1')).toBe(ipBucket('2001:0db8:0000:0000:ffff::'));
  });

  it('gives another /64 another bucket, and never mixes IPv4 and IPv6', () => {
    expect(ipBucket('2001:db8:1:3::1')).not.toBe(ipBucket('2001:db8:1:2::1'));
    expect(ipBucket('2001:db8:2:2::1')).not.toBe(ipBucket('2001:db8:1:2::1'));
    expect(ipBucket('2001:db8::1')).not.toBe(ipBucket('2001:db8:0:1::1'));
    expect(ipBucket('::1')).not.toBe(ipBucket('127.0.0.1'));
  });
});

describe('effectiveLimits', () => {
  const { config } = parseConfig({
    RATE_LIMIT_REQUESTS: '10',
    RATE_LIMIT_WINDOW: '60',
    TOKEN_QUOTA_PER_MINUTE: '1000',
    MAX_CONCURRENT_STREAMS: '2',
    LIMITS_BY_ROLE: '{"admin":{"requests":1000,"concurrent_streams":8}}',
  });
  const none = { rate_limit_requests: null, rate_limit_window_seconds: null, token_quota_per_minute: null, token_quota_per_day: null, max_concurrent_streams: null };

  it('takes the global defaults for a role without its own', () => {
    expect(effectiveLimits({ config: config.limits, role: 'user', overrides: none })).toEqual({
      requests: 10,
      windowSeconds: 60,
      tokensPerMinute: 1000,
      tokensPerDay: 0,
      maxConcurrentStreams: 2,
    });
  });

  it('takes the role’s defaults over the global ones, field by field', () => {
    expect(effectiveLimits({ config: config.limits, role: 'admin', overrides: none })).toEqual({
      requests: 1000,
      windowSeconds: 60,
      tokensPerMinute: 1000,
      tokensPerDay: 0,
      maxConcurrentStreams: 8,
    });
  });

  it('takes an administrator’s override over both, and 0 as “no token quota”', () => {
    const overrides = { ...none, rate_limit_requests: 3, token_quota_per_minute: 0, max_concurrent_streams: 1 };
    expect(effectiveLimits({ config: config.limits, role: 'admin', overrides })).toEqual({
      requests: 3,
      windowSeconds: 60,
      tokensPerMinute: 0,
      tokensPerDay: 0,
      maxConcurrentStreams: 1,
    });
  });
});

describe.each(storeKinds)('admission on the %s store', (kind) => {
  let store: KeyValueStore;
  storeForSuite(kind, 'admission', (opened) => (store = opened));

  const key = (label: string) => `${label}:${randomUUID()}`;

  describe('request rate (GCRA)', () => {
    it('admits `limit` requests at once, counting down, and refuses the next with the time until one is back', async () => {
      const check = rate(key('rate'), 5, minuteMs);
      const now = minuteStart(1000);
      const results: AdmissionResult[] = [];
      for (let index = 0; index < 5; index += 1) results.push(await store.admit(request(now, { rates: [check] })));
      expect(results.map((result) => result.allowed)).toEqual([true, true, true, true, true]);
      expect(results.map((result) => result.rates[0]?.remaining)).toEqual([4, 3, 2, 1, 0]);
      // The bucket is whole again once every request's share of the window (12 s each) has passed.
      expect(results.map((result) => result.rates[0]?.resetMs)).toEqual([12_000, 24_000, 36_000, 48_000, 60_000]);

      const refused = await store.admit(request(now, { rates: [check] }));
      expect(refused.allowed).toBe(false);
      expect(refused.failure).toEqual({ kind: 'rate', index: 0, retryAfterMs: 12_000 });

      // Still refused just before that time, admitted at it.
      expect((await store.admit(request(now + 11_999, { rates: [check] }))).allowed).toBe(false);
      const back = await store.admit(request(now + 12_000, { rates: [check] }));
      expect(back.allowed).toBe(true);
      expect(back.rates[0]?.remaining).toBe(0);
    });

    it('gives back about half the budget after half a window, not all of it', async () => {
      const check = rate(key('half'), 10, minuteMs);
      const now = minuteStart(5000);
      for (let index = 0; index < 10; index += 1) expect((await store.admit(request(now, { rates: [check] }))).allowed).toBe(true);
      expect((await store.admit(request(now, { rates: [check] }))).allowed).toBe(false);

      let admitted = 0;
      const later = now + minuteMs / 2;
      for (let index = 0; index < 10; index += 1) if ((await store.admit(request(later, { rates: [check] }))).allowed) admitted += 1;
      expect(admitted).toBe(5);

      // A whole window after the last admission, the whole budget is back.
      let refilled = 0;
      for (let index = 0; index < 12; index += 1) if ((await store.admit(request(later + minuteMs, { rates: [check] }))).allowed) refilled += 1;
      expect(refilled).toBe(10);
    });

    it('allows no second burst across a fixed window’s edge', async () => {
      const check = rate(key('edge'), 10, minuteMs);
      const edge = minuteStart();
      // A client hammering every 10 ms from one second before a minute's edge to one second after:
      // a fixed window would let `limit` through on each side of the edge.
      let admitted = 0;
      let admittedAfterEdge = 0;
      for (let now = edge - 1000; now <= edge + 1000; now += 10) {
        const result = await store.admit(request(now, { rates: [check] }));
        if (result.allowed) {
          admitted += 1;
          if (now >= edge) admittedAfterEdge += 1;
        }
      }
      expect(admitted).toBe(10);
      expect(admittedAfterEdge).toBe(0);
    });

    it('reports on refusal which of several rate checks failed, and consumes none of them', async () => {
      const user = rate(key('user'), 100, minuteMs);
      const ip = rate(key('ip'), 2, minuteMs);
      const now = minuteStart(2000);
      expect((await store.admit(request(now, { rates: [user, ip] }))).allowed).toBe(true);
      expect((await store.admit(request(now, { rates: [user, ip] }))).allowed).toBe(true);
      const refused = await store.admit(request(now, { rates: [user, ip] }));
      expect(refused.failure).toMatchObject({ kind: 'rate', index: 1 });

      // The refused request took nothing from the user's budget: 98 left, as after two requests.
      const peeked = await store.peek({ now, rates: [user], quotas: [] });
      expect(peeked.rates[0]?.remaining).toBe(98);
    });

    it('peek reads what is left without consuming it', async () => {
      const check = rate(key('peek'), 4, minuteMs);
      const now = minuteStart(3000);
      const empty = await store.peek({ now, rates: [check], quotas: [] });
      expect(empty.rates[0]).toEqual({ remaining: 4, resetMs: 0 });
      const admitted = await store.admit(request(now, { rates: [check] }));
      const first = await store.peek({ now, rates: [check], quotas: [] });
      const second = await store.peek({ now, rates: [check], quotas: [] });
      expect(first.rates[0]).toEqual({ remaining: 3, resetMs: 15_000 });
      expect(second.rates[0]).toEqual(first.rates[0]);
      expect(admitted.rates[0]).toEqual(first.rates[0]);
    });
  });

  describe('token quotas', () => {
    const quota = (quotaKey: string, limit: number, reserve: number): QuotaCheck => ({ key: quotaKey, limit, windowMs: minuteMs, reserve });

    it('reserves up front, lets the request that crosses the limit through, then refuses until the window ends', async () => {
      const quotaKey = key('quota');
      const now = minuteStart(10_000);
      const first = await store.admit(request(now, { quotas: [quota(quotaKey, 100, 60)] }));
      expect(first.allowed).toBe(true);
      expect(first.quotas[0]).toMatchObject({ used: 60, resetMs: 50_000 });
      // 60 < 100: admitted, and the counter overshoots by at most this one reservation.
      const second = await store.admit(request(now, { quotas: [quota(quotaKey, 100, 60)] }));
      expect(second.allowed).toBe(true);
      expect(second.quotas[0]?.used).toBe(120);

      const refused = await store.admit(request(now + 5000, { quotas: [quota(quotaKey, 100, 1)] }));
      expect(refused.allowed).toBe(false);
      expect(refused.failure).toEqual({ kind: 'quota', index: 0, retryAfterMs: 45_000 });

      // The next minute has a counter of its own.
      const nextMinute = await store.admit(request(now + 50_000, { quotas: [quota(quotaKey, 100, 7)] }));
      expect(nextMinute.allowed).toBe(true);
      expect(nextMinute.quotas[0]?.used).toBe(7);
    });

    it('settles a reservation with the real usage, which frees the rest of the budget', async () => {
      const quotaKey = key('settle');
      const now = minuteStart(1000);
      const first = await store.admit(request(now, { quotas: [quota(quotaKey, 100, 60)] }));
      const second = await store.admit(request(now, { quotas: [quota(quotaKey, 100, 60)] }));
      expect((await store.admit(request(now, { quotas: [quota(quotaKey, 100, 60)] }))).allowed).toBe(false);

      // Each really used 15 tokens.
      for (const result of [first, second]) await store.settle({ quotas: [{ bucketKey: result.quotas[0]!.bucketKey, delta: 15 - 60, ttlMs: 120_000 }], release: null });
      const peeked = await store.peek({ now, rates: [], quotas: [{ key: quotaKey, limit: 100, windowMs: minuteMs }] });
      expect(peeked.quotas[0]?.used).toBe(30);
      expect((await store.admit(request(now, { quotas: [quota(quotaKey, 100, 60)] }))).quotas[0]?.used).toBe(90);
    });

    it('never settles a counter below zero', async () => {
      const quotaKey = key('floor');
      const now = minuteStart(1000);
      const admitted = await store.admit(request(now, { quotas: [quota(quotaKey, 100, 10)] }));
      await store.settle({ quotas: [{ bucketKey: admitted.quotas[0]!.bucketKey, delta: -500, ttlMs: 120_000 }], release: null });
      const peeked = await store.peek({ now, rates: [], quotas: [{ key: quotaKey, limit: 100, windowMs: minuteMs }] });
      expect(peeked.quotas[0]?.used).toBe(0);
    });

    it('refuses on a spent quota without taking from the request rate', async () => {
      const quotaKey = key('spent');
      const check = rate(key('spent-rate'), 10, minuteMs);
      const now = minuteStart(1000);
      expect((await store.admit(request(now, { rates: [check], quotas: [quota(quotaKey, 50, 50)] }))).allowed).toBe(true);
      const refused = await store.admit(request(now, { rates: [check], quotas: [quota(quotaKey, 50, 1)] }));
      expect(refused.failure?.kind).toBe('quota');
      const peeked = await store.peek({ now, rates: [check], quotas: [] });
      expect(peeked.rates[0]?.remaining).toBe(9);
    });
  });

  describe('concurrency leases', () => {
    const lease = (leaseKey: string, limit: number, leaseId: string, leaseTtlMs = 60_000): ConcurrencyCheck => ({ key: leaseKey, limit, leaseId, leaseTtlMs });

    it('holds `limit` leases, refuses one more, and admits again once one is released', async () => {
      const leaseKey = key('leases');
      const now = Date.now();
      expect((await store.admit(request(now, { concurrency: lease(leaseKey, 2, 'a') }))).allowed).toBe(true);
      expect((await store.admit(request(now, { concurrency: lease(leaseKey, 2, 'b') }))).allowed).toBe(true);
      const refused = await store.admit(request(now, { concurrency: lease(leaseKey, 2, 'c') }));
      expect(refused.allowed).toBe(false);
      expect(refused.failure?.kind).toBe('concurrency');
      expect(refused.failure?.retryAfterMs).toBeGreaterThanOrEqual(1000);

      await store.settle({ quotas: [], release: { key: leaseKey, leaseId: 'a' } });
      expect((await store.admit(request(now, { concurrency: lease(leaseKey, 2, 'c') }))).allowed).toBe(true);
      expect((await store.admit(request(now, { concurrency: lease(leaseKey, 2, 'd') }))).allowed).toBe(false);
    });

    it('applies a settlement marked onlyIfLeased only while its lease is held: an admission whose answer was lost settles if it ran, and does nothing if it did not', async () => {
      const leaseKey = key('lost');
      const quotaKey = key('lost-quota');
      const now = minuteStart(1000);
      const quotaCheck: QuotaCheck = { key: quotaKey, limit: 1000, windowMs: minuteMs, reserve: 100 };
      const ran = await store.admit(request(now, { quotas: [quotaCheck], concurrency: lease(leaseKey, 2, 'ran') }));
      expect(ran.quotas[0]?.used).toBe(100);
      const bucket = ran.quotas[0]!.bucketKey;
      const settleIfLeased = (leaseId: string, used: number) =>
        store.settle({ quotas: [{ bucketKey: bucket, delta: used - 100, ttlMs: 120_000 }], release: { key: leaseKey, leaseId }, onlyIfLeased: true });

      // 'never-ran' reached the store no more than its answer came back: nothing to settle.
      await settleIfLeased('never-ran', 0);
      expect((await store.peek({ now, rates: [], quotas: [quotaCheck] })).quotas[0]?.used).toBe(100);
      // 'ran' did: its reservation becomes the 30 tokens used, and its slot is freed.
      await settleIfLeased('ran', 30);
      expect((await store.peek({ now, rates: [], quotas: [quotaCheck] })).quotas[0]?.used).toBe(30);
      expect((await store.admit(request(now, { concurrency: lease(leaseKey, 1, 'next') }))).allowed).toBe(true);
      // Applied once: a second time finds no lease.
      await settleIfLeased('ran', 30);
      expect((await store.peek({ now, rates: [], quotas: [quotaCheck] })).quotas[0]?.used).toBe(30);
    });

    it('lets the lease of a dead instance lapse, unless it is renewed', async () => {
      const lapsing = key('lapsing');
      const renewed = key('renewed');
      const now = Date.now();
      expect((await store.admit(request(now, { concurrency: lease(lapsing, 1, 'old', 1000) }))).allowed).toBe(true);
      expect((await store.admit(request(now, { concurrency: lease(renewed, 1, 'old', 1000) }))).allowed).toBe(true);
      await store.renewLease({ key: renewed, leaseId: 'old', ttlMs: 60_000 });

      expect((await store.admit(request(now + 5000, { concurrency: lease(lapsing, 1, 'new') }))).allowed).toBe(true);
      expect((await store.admit(request(now + 5000, { concurrency: lease(renewed, 1, 'new') }))).allowed).toBe(false);
    });

    it('refuses on concurrency without consuming the rate or reserving tokens', async () => {
      const leaseKey = key('busy');
      const check = rate(key('busy-rate'), 10, minuteMs);
      const quotaKey = key('busy-quota');
      const now = minuteStart(1000);
      const quotaCheck: QuotaCheck = { key: quotaKey, limit: 1000, windowMs: minuteMs, reserve: 100 };
      expect((await store.admit(request(now, { rates: [check], quotas: [quotaCheck], concurrency: lease(leaseKey, 1, 'first') }))).allowed).toBe(true);
      const refused = await store.admit(request(now, { rates: [check], quotas: [quotaCheck], concurrency: lease(leaseKey, 1, 'second') }));
      expect(refused.failure?.kind).toBe('concurrency');
      const peeked = await store.peek({ now, rates: [check], quotas: [{ key: quotaKey, limit: 1000, windowMs: minuteMs }] });
      expect(peeked.rates[0]?.remaining).toBe(9);
      expect(peeked.quotas[0]?.used).toBe(100);
    });
  });
});

describe.skipIf(testRedisUrl === null)('the Lua script and the in-memory twin agree', () => {
  const prefix = `${uniqueName('agreement')}:`;
  let redis: KeyValueStore;
  let memory: KeyValueStore;

  beforeAll(async () => {
    redis = await openStore('redis', prefix);
    memory = await openStore('memory', prefix);
  });

  afterAll(async () => {
    await redis.close();
    await memory.close();
    await deleteKeys(prefix);
  });

  /** A small deterministic generator, so a failure can be replayed. */
  function generator(seed: number): () => number {
    let state = seed >>> 0;
    return () => {
      state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
      return state / 2 ** 32;
    };
  }

  type Step =
    | { kind: 'admit'; request: AdmissionRequest }
    | { kind: 'finish'; admission: number; used: number }
    | { kind: 'peek'; now: number; rates: RateCheck[]; quotas: Array<Omit<QuotaCheck, 'reserve'>> };

  /** A script of operations: admissions with every kind of check, settlements, peeks; `fractional`: windows that are no multiple of the limit. */
  function script(options: { seed: number; label: string; fractional: boolean }): Step[] {
    const { label } = options;
    const random = generator(options.seed);
    const steps: Step[] = [];
    let now = minuteStart(500);
    const rates = options.fractional
      ? [rate(`${label}:rate:a`, 7, 10_000), rate(`${label}:rate:b`, 3, 1000), rate(`${label}:rate:c`, 20, minuteMs)]
      : [rate(`${label}:rate:a`, 8, 10_000), rate(`${label}:rate:b`, 4, 1000), rate(`${label}:rate:c`, 20, minuteMs)];
    for (let index = 0; index < 300; index += 1) {
      now += Math.floor(random() * 400);
      const choice = random();
      if (choice < 0.7) {
        const reserve = 1 + Math.floor(random() * 80);
        const chosenRates = rates.filter(() => random() < 0.6);
        const quotas: QuotaCheck[] = random() < 0.6 ? [{ key: `${label}:quota:minute`, limit: 500, windowMs: minuteMs, reserve }, { key: `${label}:quota:second`, limit: 120, windowMs: 1000, reserve }] : [];
        const concurrency = random() < 0.5 ? { key: `${label}:leases`, limit: 3, leaseId: `lease-${index}`, leaseTtlMs: 2000 } : null;
        steps.push({ kind: 'admit', request: { now, rates: chosenRates, quotas, concurrency } });
      } else if (choice < 0.9) {
        steps.push({ kind: 'finish', admission: Math.floor(random() * 1000), used: Math.floor(random() * 60) });
      } else {
        steps.push({ kind: 'peek', now, rates, quotas: [{ key: `${label}:quota:minute`, limit: 500, windowMs: minuteMs }] });
      }
    }
    return steps;
  }

  async function run(store: KeyValueStore, steps: Step[]): Promise<unknown[]> {
    const outputs: unknown[] = [];
    const admitted: Array<{ request: AdmissionRequest; result: AdmissionResult; finished: boolean }> = [];
    for (const step of steps) {
      if (step.kind === 'admit') {
        const result = await store.admit(step.request);
        outputs.push(result);
        if (result.allowed) admitted.push({ request: step.request, result, finished: false });
      } else if (step.kind === 'finish') {
        const open = admitted.filter((entry) => !entry.finished);
        const entry = open[step.admission % Math.max(1, open.length)];
        if (entry === undefined) continue;
        entry.finished = true;
        await store.settle({
          quotas: entry.result.quotas.map((quota, index) => ({ bucketKey: quota.bucketKey, delta: step.used - (entry.request.quotas[index]?.reserve ?? 0), ttlMs: quota.resetMs + 60_000 })),
          release: entry.request.concurrency === null ? null : { key: entry.request.concurrency.key, leaseId: entry.request.concurrency.leaseId },
        });
      } else {
        outputs.push(await store.peek({ now: step.now, rates: step.rates, quotas: step.quotas }));
      }
    }
    return outputs;
  }

  it.each([
    { seed: 1, fractional: false },
    { seed: 2, fractional: false },
    { seed: 3, fractional: true },
    { seed: 4, fractional: true },
  ])('gives the same answer to every step of script $seed (fractional emission interval: $fractional)', async ({ seed, fractional }) => {
    const label = `script-${seed}-${randomUUID()}`;
    const steps = script({ seed, label, fractional });
    const fromMemory = await run(memory, steps);
    const fromRedis = await run(redis, steps);
    const admittedCount = fromMemory.filter((output) => (output as Partial<AdmissionResult>).allowed === true).length;
    const refusedCount = fromMemory.filter((output) => (output as Partial<AdmissionResult>).allowed === false).length;
    // The script exercises both outcomes, or it proves little.
    expect(admittedCount).toBeGreaterThan(10);
    expect(refusedCount).toBeGreaterThan(10);
    for (const [index, output] of fromMemory.entries()) expect(fromRedis[index], `step ${index}`).toEqual(output);
  });
});
