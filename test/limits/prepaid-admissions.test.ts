// Prepaid admissions on two gateway instances sharing PostgreSQL and Redis: a caller coming back is
// admitted from memory, on a request Redis charged with its previous one, and another is charged
// when that request ends, with its settlement (up to two held per caller). The limits stay exact (what was charged and not used is given back,
// a refused request uses what is held), and a revoked credential is refused on its very next
// request on either instance, prepaid admission held or not.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AdmissionRequest } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { adminEnvironment, bearer, expectError, randomIp, relaxedAuthLimits } from '../helpers/auth-client.js';
import { hasRealServices, testRedisUrl, uniqueName } from '../helpers/environment.js';
import { SIM_CREATED } from '../helpers/listening-gateway.js';
import { upstreamRequestsFor } from '../helpers/relay-fixtures.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { APP_CHAT_JSON_PATH, eventually, expectOk, expectRefused, generate, metricValue, myUsage, newLimitsCaller, sleep, type LimitsCaller } from '../helpers/limits-fixtures.js';

const LIMIT = 40;

describe.skipIf(!hasRealServices)('prepaid admissions', () => {
  const keyPrefix = `${uniqueName('prepaid-admissions')}:`;
  let simulator: Simulator;
  let stores: KeyValueStore[];
  let first: TestApp;
  let second: TestApp;

  beforeAll(async () => {
    simulator = await startSimulator({ created: SIM_CREATED });
    stores = [await createRedisStore({ url: testRedisUrl!, keyPrefix }), await createRedisStore({ url: testRedisUrl!, keyPrefix })];
    const environment = {
      ...relaxedAuthLimits,
      ...adminEnvironment,
      VLLM_BASE_URL: simulator.url,
      REDIS_KEY_PREFIX: keyPrefix,
      RATE_LIMIT_REQUESTS: String(LIMIT),
      RATE_LIMIT_WINDOW: '86400',
      MAX_CONCURRENT_STREAMS: '1000',
    };
    first = await createTestApp({ backend: 'real', environment, dependencies: { store: stores[0]! } });
    second = await createTestApp({ backend: 'real', environment, sharing: first, dependencies: { store: stores[1]! } });
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    await second.close();
    await first.close();
    for (const store of stores) await store.close();
    await simulator.close();
  });

  /**
   * Every admission an instance asks of Redis from now on: on a request's path, or a prepaid one
   * alone when a request ends; with `delayAloneMs`, Redis's answers to the latter reach the instance
   * that much later (charged at once, answered late).
   */
  function watchAdmissions(store: KeyValueStore, options: { delayAloneMs?: number } = {}) {
    const original = store.admit.bind(store);
    const admit = vi.spyOn(store, 'admit');
    const delayMs = options.delayAloneMs ?? 0;
    if (delayMs > 0) {
      admit.mockImplementation(async (request) => {
        const answer = await original(request);
        if (request.prepay?.alone === true) await sleep(delayMs);
        return answer;
      });
    }
    const made = () => admit.mock.calls.map(([request]: [AdmissionRequest]) => request);
    return {
      /** The admissions asked on requests' paths, in order. */
      madeOnPath: () => made().filter((request) => request.prepay?.alone !== true),
      onPath: () => made().filter((request) => request.prepay?.alone !== true).length,
      alone: () => made().filter((request) => request.prepay?.alone === true).length,
      /** Waits until every admission asked so far is answered and its answer handled. */
      async answered() {
        await Promise.allSettled(admit.mock.results.map((result) => result.value as Promise<unknown>));
        await new Promise((resolve) => setImmediate(resolve));
      },
    };
  }

  /** Revokes the caller's API key through `app`; it returns once every instance has heard of it. */
  async function revokeKey(app: TestApp['app'], caller: LimitsCaller): Promise<void> {
    const revoked = await app.inject({ method: 'DELETE', url: `/api/keys/${caller.apiKeyId}`, headers: bearer(caller.accessToken) });
    expect(revoked.statusCode, revoked.body).toBe(204);
  }

  /** Sends a change every instance hears (revoking a stranger's key): each gives back the prepaid admissions it holds. */
  async function announceUnrelatedChange(): Promise<void> {
    await revokeKey(first.app, await newLimitsCaller(first.app));
  }

  async function requestsLeft(caller: LimitsCaller): Promise<number> {
    return (await myUsage(first.app, caller.accessToken)).requests.remaining;
  }

  it('admits a caller coming back without asking Redis on the request’s path, and counts every request once', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    const watch = watchAdmissions(stores[0]!);
    const usedBefore = await metricValue(first.app, 'rate_limit_prepaid_admissions_total', { outcome: 'used' });
    for (let index = 0; index < 6; index += 1) {
      const response = await generate(first.app, { credential: caller.apiKey, remoteAddress: ip });
      expectOk(response);
      expect(upstreamRequestsFor(simulator, response.requestId)).toHaveLength(1);
      // A caller who comes back sooner may find the next one not charged yet, and ask Redis again.
      await watch.answered();
    }
    // The first request checks the credential in full; the second, on the judged credential, marks
    // the caller as coming back; the third asks for the fourth to be prepaid, and when it ends for
    // one more. From then on each request is admitted from memory and asks, when it ends, for another.
    expect(watch.onPath()).toBe(3);
    expect(watch.alone()).toBe(4);
    expect(await metricValue(first.app, 'rate_limit_prepaid_admissions_total', { outcome: 'used' })).toBe(usedBefore + 3);
    expect(await metricValue(first.app, 'rate_limit_prepaid_feed_current')).toBe(1);
    // Two more are charged in advance while they are held; given back (the key revoked), exactly the six count.
    expect(await requestsLeft(caller)).toBe(LIMIT - 8);
    await revokeKey(first.app, caller);
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 6));
  });

  it('asks for another charge only when a coming-back caller’s request ends, in the same turn as that request’s settlement (one script call)', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    const store = stores[0]!;
    const originalSettle = store.settle.bind(store);
    let settledThisTurn = false;
    vi.spyOn(store, 'settle').mockImplementation((settlement) => {
      settledThisTurn = true;
      // Registered before the settlement's own flush (redis-script-batch), so it clears before it.
      setImmediate(() => (settledThisTurn = false));
      return originalSettle(settlement);
    });
    const originalAdmit = store.admit.bind(store);
    const aloneAskedWithSettlement: boolean[] = [];
    vi.spyOn(store, 'admit').mockImplementation((request) => {
      if (request.prepay?.alone === true) aloneAskedWithSettlement.push(settledThisTurn);
      return originalAdmit(request);
    });
    for (let index = 0; index < 6; index += 1) {
      expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
      await eventually(async () => expect(aloneAskedWithSettlement).toHaveLength(Math.max(0, index - 1)));
    }
    expect(aloneAskedWithSettlement).toEqual([true, true, true, true]);
  });

  it('has a request that comes before the next charge is answered wait for it, and ask Redis itself when Redis is slower than the limits timeout', async () => {
    const used = () => metricValue(first.app, 'rate_limit_prepaid_admissions_total', { outcome: 'used' });
    for (const [delayAloneMs, waited] of [
      [300, true],
      [1_500, false],
    ] as const) {
      vi.restoreAllMocks();
      const caller = await newLimitsCaller(first.app);
      const ip = randomIp();
      const watch = watchAdmissions(stores[0]!, { delayAloneMs });
      for (let index = 0; index < 3; index += 1) {
        expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
        if (index < 2) await watch.answered();
      }
      // The third asked for one with its own admission (answered with it), and for another when it
      // ended (answered late). The fourth comes at once and uses the first; when it ends it asks for
      // one more, answered late too.
      expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
      await eventually(async () => expect(watch.alone()).toBe(2));
      const usedBefore = await used();
      expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
      // Waited for (LIMITS_STORE_TIMEOUT_MS is 900 ms in the tests), or given up on and asked of
      // Redis — as after a timed-out check, with the credential checked in full first.
      expect(watch.onPath()).toBe(waited ? 3 : 4);
      if (!waited) expect(watch.madeOnPath().at(-1)?.precondition ?? null).toBeNull();
      expect(await used()).toBe(usedBefore + (waited ? 1 : 0));
      await watch.answered();
      // Answered late, the charge is still held, and the next request uses it.
      expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
      expect(await used()).toBe(usedBefore + (waited ? 2 : 1));
      await watch.answered();
      // Six requests, and two more charged in advance: given back once the key is revoked.
      await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 8));
      await revokeKey(first.app, caller);
      await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 6));
    }
  });

  it('admits a caller that sends its next request the moment the last one ended from memory, though the charge that one asked for is still on its way', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    const used = () => metricValue(first.app, 'rate_limit_prepaid_admissions_total', { outcome: 'used' });
    // Charges asked alone are answered a second late: longer than the limits timeout (900 ms in the
    // tests), so a request that waited for one would give up and ask Redis itself.
    const watch = watchAdmissions(stores[0]!, { delayAloneMs: 1_000 });
    for (let index = 0; index < 3; index += 1) {
      expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
      if (index < 2) await watch.answered();
    }
    // The third asked for one with its own admission and for a second when it ended: both held.
    await eventually(async () => expect(watch.alone()).toBe(1));
    await watch.answered();
    const usedBefore = await used();
    // Back to back: the fourth uses one and asks for another when it ends (a second on its way); the
    // fifth, at once, uses the second held — neither waits for Redis nor asks it on its path.
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    expect(await used()).toBe(usedBefore + 2);
    expect(watch.onPath()).toBe(3);
    await watch.answered();
    // Five requests, and two charged in advance: given back once the key is revoked.
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 7));
    await revokeKey(first.app, caller);
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 5));
  });

  it('keeps a prepaid admission through a change of another user, and gives it back on a change of its own credential', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    for (let index = 0; index < 3; index += 1) expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    // Three requests, and two charged in advance (by the third, and when it ended).
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 5));
    const used = () => metricValue(first.app, 'rate_limit_prepaid_admissions_total', { outcome: 'used' });
    const usedBefore = await used();
    await announceUnrelatedChange();
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    expect(await used()).toBe(usedBefore + 1);
    // Four requests, and two held again (the fourth asked for one when it ended): given back once the key is revoked.
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 6));
    await revokeKey(first.app, caller);
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 4));
  });

  it('gives back a prepaid admission its caller did not use within its lifetime', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    for (let index = 0; index < 3; index += 1) expectOk(await generate(first.app, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH, remoteAddress: ip }));
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 5));
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 3), 10_000, 250);
  });

  it('refuses an API key revoked on the other instance on its very next request, though a prepaid admission was held for it', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    for (let index = 0; index < 4; index += 1) expectOk(await generate(second.app, { credential: caller.apiKey, remoteAddress: ip }));
    const givenBackBefore = await metricValue(second.app, 'rate_limit_prepaid_admissions_total', { outcome: 'given_back' });
    await revokeKey(first.app, caller);
    const refused = await generate(second.app, { credential: caller.apiKey, remoteAddress: ip });
    expectError(refused, 401, 'invalid_api_key');
    expect(upstreamRequestsFor(simulator, refused.requestId)).toHaveLength(0);
    expect(await metricValue(second.app, 'rate_limit_prepaid_admissions_total', { outcome: 'given_back' })).toBeGreaterThan(givenBackBefore);
  });

  it('refuses an access token logged out on the other instance on its very next request, though a prepaid admission was held for it', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    for (let index = 0; index < 4; index += 1) expectOk(await generate(second.app, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH, remoteAddress: ip }));
    const loggedOut = await first.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(caller.accessToken) });
    expect(loggedOut.statusCode, loggedOut.body).toBe(204);
    const refused = await generate(second.app, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH, remoteAddress: ip });
    expectError(refused, 401, 'invalid_token');
    expect(upstreamRequestsFor(simulator, refused.requestId)).toHaveLength(0);
  });

  it('lets exactly the limit through when a burst comes while both instances hold prepaid admissions for the caller', async () => {
    const caller = await newLimitsCaller(first.app);
    const ips = [randomIp(), randomIp()];
    const apps = [first.app, second.app];
    // Three requests in turn on each instance: each then holds two prepaid admissions for the caller.
    for (const [index, app] of apps.entries()) {
      for (let turn = 0; turn < 3; turn += 1) expectOk(await generate(app, { credential: caller.apiKey, remoteAddress: ips[index]! }));
    }
    await eventually(async () => expect(await requestsLeft(caller)).toBe(LIMIT - 10));
    const burst = await Promise.all(
      Array.from({ length: 2 * LIMIT }, (_, index) => generate(apps[index % 2]!, { credential: caller.apiKey, remoteAddress: ips[index % 2]! })),
    );
    const admitted = burst.filter((response) => response.statusCode === 200);
    for (const response of burst.filter((each) => each.statusCode !== 200)) expectRefused(response, 'rate_limited');
    expect(admitted).toHaveLength(LIMIT - 6);
    // Nothing is left over for later: once whatever is held for the key is given back, none is left.
    await revokeKey(first.app, caller);
    await eventually(async () => expect(await requestsLeft(caller)).toBe(0));
  });
});
