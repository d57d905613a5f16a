// Request limits on the generation routes: per user (whatever the credential or route), per client
// IP (IPv6 by /64), with the IETF and OpenAI limit headers on every answer — JSON, SSE and 429 —
// and a sliding budget (GCRA) rather than a window that refills all at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { randomIp } from '../helpers/auth-client.js';
import { callGateway } from '../helpers/relay-fixtures.js';
import {
  APP_CHAT_JSON_PATH,
  APP_CHAT_PATH,
  CHAT_PATH,
  COMPLETIONS_PATH,
  chatBody,
  expectNotRelayed,
  expectOk,
  expectRefused,
  expectRequestLimitHeaders,
  generate,
  headerOf,
  newLimitsCaller,
  randomIpv6Prefix,
  rejectionsByReason,
  rejectionsSince,
  sleep,
  startLimitsGateway,
  type LimitsGateway,
} from '../helpers/limits-fixtures.js';

const USER_LIMIT = 3;
const IP_LIMIT = 5;
const WINDOW_SECONDS = 3600;

describe.each(backends)('request limits per user and per IP (%s)', (backend) => {
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({
      backend,
      environment: {
        RATE_LIMIT_REQUESTS: String(USER_LIMIT),
        RATE_LIMIT_WINDOW: String(WINDOW_SECONDS),
        RATE_LIMIT_IP_REQUESTS: String(IP_LIMIT),
        RATE_LIMIT_IP_WINDOW: String(WINDOW_SECONDS),
      },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('admits a user’s `limit` requests with the limit headers counting down, then answers 429 rate_limited with Retry-After', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const ip = randomIp();
    for (let index = 0; index < USER_LIMIT; index += 1) {
      const response = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
      expectOk(response);
      const { resetSeconds } = expectRequestLimitHeaders(response.headers, { limit: USER_LIMIT, remaining: USER_LIMIT - 1 - index });
      expect(resetSeconds).toBeGreaterThan(0);
      expect(resetSeconds).toBeLessThanOrEqual(WINDOW_SECONDS);
    }

    const refused = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    const retryAfter = expectRefused(refused, 'rate_limited');
    // One request's share of the window: 3600 s / 3.
    expect(retryAfter).toBeLessThanOrEqual(WINDOW_SECONDS / USER_LIMIT);
    expect(retryAfter).toBeGreaterThan(WINDOW_SECONDS / USER_LIMIT - 60);
    expectRequestLimitHeaders(refused.headers, { limit: USER_LIMIT, remaining: 0 });
    expectNotRelayed(gateway.simulator, refused.requestId);

    // Another user is not affected.
    const other = await newLimitsCaller(gateway.app);
    const response = await generate(gateway.app, { credential: other.apiKey, remoteAddress: randomIp() });
    expectOk(response);
    expectRequestLimitHeaders(response.headers, { limit: USER_LIMIT, remaining: USER_LIMIT - 1 });
  });

  it('says on a 429 when the budget is back: RateLimit-Reset and x-ratelimit-reset-requests not 0, at least Retry-After', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const ip = randomIp();
    for (let index = 0; index < USER_LIMIT; index += 1) expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    const refused = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    const retryAfter = expectRefused(refused, 'rate_limited');
    const { resetSeconds } = expectRequestLimitHeaders(refused.headers, { limit: USER_LIMIT, remaining: 0 });
    expect(resetSeconds, 'ratelimit-reset on a 429').toBeGreaterThanOrEqual(retryAfter);
    expect(headerOf(refused.headers, 'x-ratelimit-reset-requests')).not.toBe('0s');
  });

  it('counts one budget per user across API keys, access tokens and every generation route', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const ip = randomIp();
    const first = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip, path: CHAT_PATH });
    expectOk(first);
    expectRequestLimitHeaders(first.headers, { limit: USER_LIMIT, remaining: 2 });
    const second = await generate(gateway.app, { credential: caller.accessToken, remoteAddress: ip, path: COMPLETIONS_PATH });
    expectOk(second);
    expectRequestLimitHeaders(second.headers, { limit: USER_LIMIT, remaining: 1 });
    const third = await generate(gateway.app, { credential: caller.accessToken, remoteAddress: ip, path: APP_CHAT_JSON_PATH });
    expectOk(third);
    expectRequestLimitHeaders(third.headers, { limit: USER_LIMIT, remaining: 0 });

    for (const path of [APP_CHAT_PATH, CHAT_PATH, COMPLETIONS_PATH]) {
      const refused = await generate(gateway.app, { credential: path === CHAT_PATH ? caller.apiKey : caller.accessToken, remoteAddress: ip, path });
      expectRefused(refused, 'rate_limited');
      expectNotRelayed(gateway.simulator, refused.requestId);
    }
  });

  it('limits one client address across users, and a refusal there takes nothing from the user’s own budget', async () => {
    const sharedIp = randomIp();
    const first = await newLimitsCaller(gateway.app);
    const second = await newLimitsCaller(gateway.app);
    const third = await newLimitsCaller(gateway.app);
    for (let index = 0; index < USER_LIMIT; index += 1) expectOk(await generate(gateway.app, { credential: first.apiKey, remoteAddress: sharedIp }));
    for (let index = 0; index < IP_LIMIT - USER_LIMIT; index += 1) expectOk(await generate(gateway.app, { credential: second.apiKey, remoteAddress: sharedIp }));

    const refused = await generate(gateway.app, { credential: third.apiKey, remoteAddress: sharedIp });
    expectRefused(refused, 'rate_limited');
    expectNotRelayed(gateway.simulator, refused.requestId);

    const elsewhere = await generate(gateway.app, { credential: third.apiKey, remoteAddress: randomIp() });
    expectOk(elsewhere);
    expectRequestLimitHeaders(elsewhere.headers, { limit: USER_LIMIT, remaining: USER_LIMIT - 1 });
  });

  it('buckets IPv6 clients by /64: two addresses in one /64 share a budget, another /64 does not', async () => {
    const prefix = randomIpv6Prefix();
    const addresses = [`${prefix}::1`, `${prefix}::2`, `${prefix}:ffff:ffff:ffff:fffe`, `${prefix}:1:2:3:4`, `${prefix}::abcd`];
    for (const [index, address] of addresses.entries()) {
      const caller = await newLimitsCaller(gateway.app);
      const response = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: address });
      expect(response.statusCode, `request ${index} from ${address}: ${response.body}`).toBe(200);
    }
    const caller = await newLimitsCaller(gateway.app);
    expectRefused(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: `${prefix}::9` }), 'rate_limited');

    const [a = '', b = '', c = '', d = ''] = prefix.split(':');
    const neighbour = `${a}:${b}:${c}:${(parseInt(d, 16) ^ 1).toString(16)}::9`;
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: neighbour }));
  });

  it('sends the limit headers on streams too (/v1 and /api/chat SSE)', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const v1 = await callGateway({ url: gateway.url, path: CHAT_PATH, body: chatBody({ stream: true }), credential: caller.apiKey });
    expect(v1.status, v1.text).toBe(200);
    expect(v1.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(v1.text).toContain('data: [DONE]');
    expectRequestLimitHeaders(v1.headers, { limit: USER_LIMIT, remaining: 2 });

    const app = await callGateway({ url: gateway.url, path: APP_CHAT_PATH, body: chatBody(), credential: caller.accessToken });
    expect(app.status, app.text).toBe(200);
    expect(app.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expectRequestLimitHeaders(app.headers, { limit: USER_LIMIT, remaining: 1 });

    const completions = await callGateway({ url: gateway.url, path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', prompt: 'hi', max_tokens: 3, stream: true }, credential: caller.apiKey });
    expect(completions.status, completions.text).toBe(200);
    expectRequestLimitHeaders(completions.headers, { limit: USER_LIMIT, remaining: 0 });
  });

  it('counts each refusal in rate_limit_rejections_total, by reason', async () => {
    const before = await rejectionsByReason(gateway.app);

    // One refusal by the user's limit…
    const caller = await newLimitsCaller(gateway.app);
    for (let index = 0; index < USER_LIMIT; index += 1) expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() }));
    expectRefused(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() }), 'rate_limited');
    const afterUser = await rejectionsByReason(gateway.app);
    const userReasons = rejectionsSince(before, afterUser);
    expect([...userReasons.values()]).toEqual([1]);

    // …and one by the address's, under another reason.
    const ip = randomIp();
    for (let index = 0; index < IP_LIMIT; index += 1) {
      const someone = await newLimitsCaller(gateway.app);
      expectOk(await generate(gateway.app, { credential: someone.apiKey, remoteAddress: ip }));
    }
    const someone = await newLimitsCaller(gateway.app);
    expectRefused(await generate(gateway.app, { credential: someone.apiKey, remoteAddress: ip }), 'rate_limited');
    const ipReasons = rejectionsSince(afterUser, await rejectionsByReason(gateway.app));
    expect([...ipReasons.values()]).toEqual([1]);
    expect([...ipReasons.keys()]).not.toEqual([...userReasons.keys()]);
  });
});

describe.each(backends)('a sliding budget, not a fixed window (%s)', (backend) => {
  const limit = 4;
  const windowMs = 2000;
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({ backend, environment: { RATE_LIMIT_REQUESTS: String(limit), RATE_LIMIT_WINDOW: String(windowMs / 1000) } });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('gives back one request per window/limit after a burst — about half the budget after half the window, not all of it', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const ip = randomIp();
    const burstStartedAt = Date.now();
    for (let index = 0; index < limit; index += 1) expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    const refused = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    // 2 s / 4 = 500 ms until one is back: Retry-After rounds up to a whole second.
    expect(expectRefused(refused, 'rate_limited')).toBe(1);

    await sleep(Math.max(0, burstStartedAt + windowMs / 2 + 100 - Date.now()));
    const elapsedAtStart = Date.now() - burstStartedAt;
    const outcomes: number[] = [];
    for (let index = 0; index < limit; index += 1) outcomes.push((await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip })).statusCode);
    const admitted = outcomes.filter((status) => status === 200).length;
    // Half a window (and a little) after the burst: two back, give or take the time the calls took.
    expect(admitted, `admitted after ${elapsedAtStart} ms: ${outcomes.join(',')}`).toBeGreaterThanOrEqual(Math.min(2, Math.floor(elapsedAtStart / (windowMs / limit))));
    expect(admitted, `admitted after ${elapsedAtStart} ms: ${outcomes.join(',')}`).toBeLessThan(limit);
    expect(outcomes.at(-1)).toBe(429);
  });
});
