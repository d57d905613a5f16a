// Limits that change without a restart: defaults by role (LIMITS_BY_ROLE), and per-user overrides
// an administrator sets with PATCH /api/admin/users/{id} (null restores the default), shown by
// GET /api/admin/users and applied on the user's very next request — on every instance.
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, hasRealServices } from '../helpers/environment.js';
import { bearer, expectError, randomIp } from '../helpers/auth-client.js';
import { newRequestId, openRawPost, readUntil } from '../helpers/relay-fixtures.js';
import {
  CHAT_PATH,
  adminAccessToken,
  chatBody,
  expectNoTokenLimitHeaders,
  expectOk,
  expectRefused,
  expectRequestLimitHeaders,
  expectTokenLimitHeaders,
  generate,
  myUsage,
  newLimitsCaller,
  patchUser,
  setLimits,
  sleep,
  startLimitsGateway,
  type LimitsCaller,
  type LimitsGateway,
} from '../helpers/limits-fixtures.js';

const USER_REQUESTS = 5;
const WINDOW_SECONDS = 3600;
const USER_STREAMS = 2;
const ADMIN_REQUESTS = 1000;
const ADMIN_STREAMS = 6;
const limitsByRole = JSON.stringify({ admin: { requests: ADMIN_REQUESTS, concurrent_streams: ADMIN_STREAMS } });

interface AdminUserView {
  id: string;
  email: string;
  limits: Record<string, number | null>;
  effective_limits: { requests: number; window_seconds: number; tokens_per_minute: number; tokens_per_day: number; max_concurrent_streams: number };
}

const noOverrides = { rate_limit_requests: null, rate_limit_window_seconds: null, token_quota_per_minute: null, token_quota_per_day: null, max_concurrent_streams: null };

const environment = {
  RATE_LIMIT_REQUESTS: String(USER_REQUESTS),
  RATE_LIMIT_WINDOW: String(WINDOW_SECONDS),
  MAX_CONCURRENT_STREAMS: String(USER_STREAMS),
  LIMITS_BY_ROLE: limitsByRole,
};

async function adminView(gateway: LimitsGateway, adminToken: string, email: string): Promise<AdminUserView> {
  const response = await gateway.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(adminToken), query: { email } });
  expect(response.statusCode, response.body).toBe(200);
  const users = response.json<{ data: AdminUserView[] }>().data.filter((user) => user.email === email);
  expect(users).toHaveLength(1);
  return users[0]!;
}

/** A stream that keeps running until destroyed. */
async function holdStream(gateway: LimitsGateway, caller: LimitsCaller): Promise<{ response: IncomingMessage; destroy: () => void }> {
  const exchange = openRawPost({
    url: gateway.url,
    path: CHAT_PATH,
    body: chatBody({ stream: true, max_tokens: 400, ignore_eos: true }),
    credential: caller.apiKey,
    requestId: newRequestId(),
  });
  const response = await exchange.response;
  expect(response.statusCode).toBe(200);
  await readUntil(response, (text) => text.includes('data: {'), 3000);
  return { response, destroy: exchange.destroy };
}

describe.each(backends)('limits by role and per user (%s)', (backend) => {
  let gateway: LimitsGateway;
  let adminToken: string;

  beforeAll(async () => {
    gateway = await startLimitsGateway({ backend, environment, simulatorOptions: { interTokenMs: 10 } });
    adminToken = await adminAccessToken(gateway.app);
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('gives each role its defaults: LIMITS_BY_ROLE for admins, the global ones for users', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const userAnswer = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expectOk(userAnswer);
    expectRequestLimitHeaders(userAnswer.headers, { limit: USER_REQUESTS });
    const adminAnswer = await generate(gateway.app, { credential: adminToken, remoteAddress: randomIp() });
    expectOk(adminAnswer);
    expectRequestLimitHeaders(adminAnswer.headers, { limit: ADMIN_REQUESTS });

    expect(await myUsage(gateway.app, caller.accessToken)).toMatchObject({ requests: { limit: USER_REQUESTS, window_seconds: WINDOW_SECONDS }, max_concurrent_streams: USER_STREAMS });
    expect(await myUsage(gateway.app, adminToken)).toMatchObject({ requests: { limit: ADMIN_REQUESTS, window_seconds: WINDOW_SECONDS }, max_concurrent_streams: ADMIN_STREAMS });

    const userView = await adminView(gateway, adminToken, caller.email);
    expect(userView.limits).toEqual(noOverrides);
    expect(userView.effective_limits).toEqual({ requests: USER_REQUESTS, window_seconds: WINDOW_SECONDS, tokens_per_minute: 0, tokens_per_day: 0, max_concurrent_streams: USER_STREAMS });
    const rootView = await adminView(gateway, adminToken, 'root@example.com');
    expect(rootView.effective_limits).toEqual({ requests: ADMIN_REQUESTS, window_seconds: WINDOW_SECONDS, tokens_per_minute: 0, tokens_per_day: 0, max_concurrent_streams: ADMIN_STREAMS });
  });

  it('applies a per-user request limit on the user’s next request (API key already seen), and shows it in /api/admin/users', async () => {
    const caller = await newLimitsCaller(gateway.app);
    // The credential has been used, so whatever the gateway caches about the user is warm.
    const seen = await myUsage(gateway.app, caller.apiKey);
    expect(seen.requests.limit).toBe(USER_REQUESTS);

    const patched = await patchUser(gateway.app, adminToken, caller.userId, { rate_limit_requests: 2 });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json<AdminUserView>()).toMatchObject({ id: caller.userId, limits: { ...noOverrides, rate_limit_requests: 2 }, effective_limits: { requests: 2, window_seconds: WINDOW_SECONDS } });

    const ip = randomIp();
    const first = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    expectOk(first);
    expectRequestLimitHeaders(first.headers, { limit: 2, remaining: 1 });
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    const refused = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    expectRefused(refused, 'rate_limited');
    expectRequestLimitHeaders(refused.headers, { limit: 2, remaining: 0 });

    const view = await adminView(gateway, adminToken, caller.email);
    expect(view.limits).toEqual({ ...noOverrides, rate_limit_requests: 2 });
    expect(view.effective_limits.requests).toBe(2);
    expect((await myUsage(gateway.app, caller.accessToken)).requests).toMatchObject({ limit: 2, remaining: 0 });
  });

  it('applies a per-user window: two per second comes back within a second', async () => {
    const caller = await newLimitsCaller(gateway.app);
    await setLimits(gateway.app, adminToken, caller.userId, { rate_limit_requests: 2, rate_limit_window_seconds: 1 });
    const ip = randomIp();
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    expect(expectRefused(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }), 'rate_limited')).toBe(1);
    await sleep(600);
    const back = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    expectOk(back);
    expectRequestLimitHeaders(back.headers, { limit: 2 });
    expect((await adminView(gateway, adminToken, caller.email)).effective_limits).toMatchObject({ requests: 2, window_seconds: 1 });
  });

  it('lets a user through at once when an administrator raises the limit they had reached', async () => {
    const caller = await newLimitsCaller(gateway.app);
    await setLimits(gateway.app, adminToken, caller.userId, { rate_limit_requests: 2 });
    const ip = randomIp();
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    expectRefused(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }), 'rate_limited');

    // Two used of ten: eight left.
    await setLimits(gateway.app, adminToken, caller.userId, { rate_limit_requests: 10 });
    const raised = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    expect(raised.statusCode, `after raising the limit to 10: ${raised.body}`).toBe(200);
    expectRequestLimitHeaders(raised.headers, { limit: 10, remaining: 7 });
  });

  it('restores the role’s default when an override is set to null', async () => {
    const caller = await newLimitsCaller(gateway.app);
    await setLimits(gateway.app, adminToken, caller.userId, { rate_limit_requests: 50, max_concurrent_streams: 9, token_quota_per_day: 5000 });
    expect(await myUsage(gateway.app, caller.accessToken)).toMatchObject({ requests: { limit: 50 }, max_concurrent_streams: 9, tokens_per_day: { limit: 5000 } });

    const reset = await patchUser(gateway.app, adminToken, caller.userId, { rate_limit_requests: null, max_concurrent_streams: null, token_quota_per_day: null });
    expect(reset.statusCode, reset.body).toBe(200);
    expect(reset.json<AdminUserView>().limits).toEqual(noOverrides);
    expect(reset.json<AdminUserView>().effective_limits).toEqual({ requests: USER_REQUESTS, window_seconds: WINDOW_SECONDS, tokens_per_minute: 0, tokens_per_day: 0, max_concurrent_streams: USER_STREAMS });

    const usage = await myUsage(gateway.app, caller.apiKey);
    expect(usage).toMatchObject({ requests: { limit: USER_REQUESTS }, max_concurrent_streams: USER_STREAMS, tokens_per_day: null });
    const answer = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expectOk(answer);
    expectRequestLimitHeaders(answer.headers, { limit: USER_REQUESTS });
    expectNoTokenLimitHeaders(answer.headers);
  });

  it('applies per-user token quotas and concurrency caps at once', async () => {
    const caller = await newLimitsCaller(gateway.app);
    expectNoTokenLimitHeaders((await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() })).headers);
    await setLimits(gateway.app, adminToken, caller.userId, { token_quota_per_minute: 5000, max_concurrent_streams: 1 });

    const stream = await holdStream(gateway, caller);
    try {
      expectTokenLimitHeaders(stream.response.headers, { limit: 5000 });
      expectRefused(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() }), 'too_many_concurrent');
    } finally {
      stream.destroy();
    }
    expect(await myUsage(gateway.app, caller.accessToken)).toMatchObject({ tokens_per_minute: { limit: 5000 }, max_concurrent_streams: 1 });

    // Raised again: two at once.
    await setLimits(gateway.app, adminToken, caller.userId, { max_concurrent_streams: 3 });
    const first = await holdStream(gateway, caller);
    const second = await holdStream(gateway, caller);
    first.destroy();
    second.destroy();
  });

  it('refuses limit values out of range, and limit changes by anyone but an administrator', async () => {
    const caller = await newLimitsCaller(gateway.app);
    for (const body of [{ rate_limit_requests: 0 }, { rate_limit_window_seconds: 0 }, { max_concurrent_streams: 0 }, { token_quota_per_minute: -1 }, { token_quota_per_day: 1.5 }, { rate_limit_requests: 'many' }]) {
      expectError(await patchUser(gateway.app, adminToken, caller.userId, body), 400, 'validation_failed');
    }
    expectError(await patchUser(gateway.app, caller.accessToken, caller.userId, { rate_limit_requests: 100_000 }), 403, 'forbidden');
    expectError(await patchUser(gateway.app, caller.apiKey, caller.userId, { max_concurrent_streams: 100 }), 403, 'forbidden');
    expect((await adminView(gateway, adminToken, caller.email)).limits).toEqual(noOverrides);
  });
});

describe.skipIf(!hasRealServices)('a limit change reaches every instance at once', () => {
  let first: LimitsGateway;
  let second: LimitsGateway;
  let adminToken: string;

  beforeAll(async () => {
    first = await startLimitsGateway({ backend: 'real', environment, simulatorOptions: { interTokenMs: 10 } });
    second = await startLimitsGateway({ backend: 'real', environment, simulator: first.simulator, sharing: first.testApp });
    adminToken = await adminAccessToken(first.app);
  });

  afterAll(async () => {
    await second.close();
    await first.close();
  });

  it('a PATCH on the first instance holds on the second for the very next request', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    const before = await generate(second.app, { credential: caller.apiKey, remoteAddress: ip });
    expectOk(before);
    expectRequestLimitHeaders(before.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 1 });

    await setLimits(first.app, adminToken, caller.userId, { rate_limit_requests: 1000, max_concurrent_streams: 1, token_quota_per_day: 7777 });
    const after = await generate(second.app, { credential: caller.apiKey, remoteAddress: ip });
    expectOk(after);
    expectRequestLimitHeaders(after.headers, { limit: 1000 });
    expectTokenLimitHeaders(after.headers, { limit: 7777 });
    expect(await myUsage(second.app, caller.accessToken)).toMatchObject({ requests: { limit: 1000 }, max_concurrent_streams: 1, tokens_per_day: { limit: 7777 } });

    // The new cap of one holds across the two: a stream on the first blocks a generation on the second.
    const stream = await holdStream(first, caller);
    try {
      expectRefused(await generate(second.app, { credential: caller.apiKey, remoteAddress: ip }), 'too_many_concurrent');
    } finally {
      stream.destroy();
    }
  });
});
