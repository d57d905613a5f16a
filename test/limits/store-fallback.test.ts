// Redis gone or slow: the limits keep working on this instance's memory (never unlimited), the
// metrics say so (rate_limit_store_fallback_total, rate_limit_store_fallback_active), the auth
// endpoints stay protected, and everything goes back to Redis when it answers again. The shared
// Redis cannot be stopped under the other test files, so a TCP proxy in front of it is cut instead.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRealServices, testRedisUrl } from '../helpers/environment.js';
import { randomIp } from '../helpers/auth-client.js';
import {
  awaitRoomInWindow,
  chatBody,
  eventually,
  expectOk,
  expectRefused,
  generate,
  metricValue,
  myUsage,
  newLimitsCaller,
  sleep,
  startLimitsGateway,
  startTcpProxy,
  type LimitsGateway,
  type TcpProxy,
} from '../helpers/limits-fixtures.js';

const USER_LIMIT = 3;
const AUTH_LIMIT = 3;
const STORE_TIMEOUT_MS = 50;
const SLOW_REDIS_MS = 3 * STORE_TIMEOUT_MS;
const DAY_QUOTA = 100_000;

describe.skipIf(!hasRealServices)('limits when Redis is down or slow', () => {
  let proxy: TcpProxy;
  let gateway: LimitsGateway;

  beforeAll(async () => {
    proxy = await startTcpProxy(testRedisUrl!);
    gateway = await startLimitsGateway({
      backend: 'real',
      environment: {
        REDIS_URL: proxy.redisUrl,
        LIMITS_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS),
        RATE_LIMIT_REQUESTS: String(USER_LIMIT),
        RATE_LIMIT_AUTH_REQUESTS: String(AUTH_LIMIT),
        MAX_CONCURRENT_STREAMS: '1',
        TOKEN_QUOTA_PER_DAY: String(DAY_QUOTA),
      },
    });
  });

  afterAll(async () => {
    await gateway.close();
    await proxy.close();
  });

  const fallbackTotal = () => metricValue(gateway.app, 'rate_limit_store_fallback_total');
  const fallbackActive = () => metricValue(gateway.app, 'rate_limit_store_fallback_active');

  /** Waits until limit checks run on Redis again (a usage read goes through the store and clears the flag). */
  async function expectRecovered(credential: string): Promise<void> {
    await eventually(
      async () => {
        await myUsage(gateway.app, credential);
        expect(await fallbackActive()).toBe(0);
      },
      8000,
      100,
    );
  }

  async function refreshAttempt(ip: string) {
    return gateway.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: `no-such-token-${Math.random()}` }, remoteAddress: ip });
  }

  it('keeps chat working under a per-instance limiter while Redis is down, keeps auth limited, and recovers', async () => {
    const caller = await newLimitsCaller(gateway.app);
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() }));
    expect(await fallbackActive()).toBe(0);
    const fallbacksBefore = await fallbackTotal();

    await proxy.cut();
    try {
      // Still answered, still limited: this instance's own budget of USER_LIMIT, then 429.
      for (let index = 0; index < USER_LIMIT; index += 1) {
        const response = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
        expect(response.statusCode, `request ${index} while Redis is down: ${response.body}`).toBe(200);
      }
      expectRefused(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() }), 'rate_limited');
      expect(await fallbackTotal()).toBeGreaterThanOrEqual(fallbacksBefore + USER_LIMIT + 1);
      expect(await fallbackActive()).toBe(1);

      // The auth endpoints stay protected.
      const ip = randomIp();
      for (let index = 0; index < AUTH_LIMIT; index += 1) expect((await refreshAttempt(ip)).statusCode).toBe(401);
      expectRefused(await refreshAttempt(ip), 'rate_limited');
    } finally {
      await proxy.restore();
    }

    await expectRecovered(caller.accessToken);
    const fallbacksAfterRecovery = await fallbackTotal();
    const other = await newLimitsCaller(gateway.app);
    expectOk(await generate(gateway.app, { credential: other.apiKey, remoteAddress: randomIp() }));
    expect(await fallbackTotal()).toBe(fallbacksAfterRecovery);
    expect(await fallbackActive()).toBe(0);
  });

  it('decides on this instance when Redis answers too slowly, and goes back to Redis when it is quick again', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const fallbacksBefore = await fallbackTotal();
    proxy.setDelay(SLOW_REDIS_MS);
    try {
      const response = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
      expectOk(response);
      expect(await fallbackTotal()).toBeGreaterThan(fallbacksBefore);
      expect(await fallbackActive()).toBe(1);
    } finally {
      proxy.setDelay(0);
    }
    await expectRecovered(caller.accessToken);
    // (Another user: what the late check left behind for this one is the next test's subject.)
    const other = await newLimitsCaller(gateway.app);
    const fallbacksAfterRecovery = await fallbackTotal();
    expectOk(await generate(gateway.app, { credential: other.apiKey, remoteAddress: randomIp() }));
    expect(await fallbackTotal()).toBe(fallbacksAfterRecovery);
    expect(await fallbackActive()).toBe(0);
  });

  // The proxy holds each chunk both ways, so Redis's answer comes after twice the delay: 300 ms;
  // 1.4 s — past ioredis's default 1 s command timeout, after which a late answer used to be dropped
  // unread, leaving its slot held and its reservation charged; and 11 s — past the limits
  // connection's own 10 s, so the answer is lost for good: a settlement that applies only while the
  // check's lease is held follows it on the same connection, and Redis runs it after the check.
  it.each([SLOW_REDIS_MS, 700, 5_500])('leaves nothing behind in Redis from a check it answered too late: no slot held, no reservation unsettled (each way delayed %i ms)', { timeout: 45_000 }, async (delayMs) => {
    await awaitRoomInWindow(86_400_000, 10_000);
    const caller = await newLimitsCaller(gateway.app);
    proxy.setDelay(delayMs);
    let used: number;
    try {
      const response = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp(), body: chatBody({ max_tokens: 50, ignore_eos: true }) });
      expectOk(response);
      const { usage } = response.json<{ usage: { prompt_tokens: number; completion_tokens: number } }>();
      used = usage.prompt_tokens + usage.completion_tokens;
      // Let the late admission reach Redis, and its answer (or the settlement that follows a lost
      // one, sent at 10 s) come back, before the delay is lifted.
      await sleep(delayMs > 5000 ? 10_000 + 2 * delayMs : 3 * delayMs);
    } finally {
      proxy.setDelay(0);
    }
    await expectRecovered(caller.accessToken);

    // The day's tokens in Redis are what vLLM reported, not the reservation of the late admission.
    expect.soft((await myUsage(gateway.app, caller.accessToken)).tokens_per_day?.used).toBe(used);
    // The generation is over: with a cap of one, the next one is admitted.
    const next = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expect(next.statusCode, next.body).toBe(200);
  });
});
