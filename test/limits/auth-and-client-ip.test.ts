// The per-IP limit on login, register and refresh, and how the client's address is found: the
// socket's, unless the peer is a trusted proxy — then X-Forwarded-For walked from the right — so a
// client cannot choose its bucket by sending the header itself; IPv6 clients count by /64.
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { expectError, me, randomIp, register, strongPassword, uniqueEmail } from '../helpers/auth-client.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { expectRefused, expectRequestLimitHeaders, randomIpv6Prefix, rejectionsByReason, rejectionsSince } from '../helpers/limits-fixtures.js';

const AUTH_LIMIT = 3;
const AUTH_WINDOW_SECONDS = 300;
const PROXY_RANGE = '10.200.0.0/16';
const PROXY = '10.200.0.1';

describe.each(backends)('auth limit per client address (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({
      backend,
      environment: {
        RATE_LIMIT_AUTH_REQUESTS: String(AUTH_LIMIT),
        RATE_LIMIT_AUTH_WINDOW: String(AUTH_WINDOW_SECONDS),
        TRUSTED_PROXIES: PROXY_RANGE,
      },
    });
  });

  afterAll(async () => {
    await testApp.close();
  });

  /** A refresh with a token that does not exist: a cheap auth request (401) that counts against the limit. */
  function refreshAttempt(options: { remoteAddress: string; forwardedFor?: string }): Promise<LightMyRequestResponse> {
    return testApp.app.inject({
      method: 'POST',
      url: '/api/auth/refresh',
      payload: { refresh_token: `no-such-token-${strongPassword()}` },
      remoteAddress: options.remoteAddress,
      ...(options.forwardedFor === undefined ? {} : { headers: { 'x-forwarded-for': options.forwardedFor } }),
    });
  }

  /** Spends the address's auth budget with refreshes; each must be answered (401), not refused. */
  async function spend(count: number, options: { remoteAddress: string; forwardedFor?: () => string }): Promise<void> {
    for (let index = 0; index < count; index += 1) {
      const response = await refreshAttempt({ remoteAddress: options.remoteAddress, ...(options.forwardedFor === undefined ? {} : { forwardedFor: options.forwardedFor() }) });
      expectError(response, 401, 'invalid_refresh_token');
    }
  }

  it('counts register, login and refresh from one address in one budget, then answers 429 rate_limited with Retry-After', async () => {
    const ip = randomIp();
    const email = uniqueEmail();
    const password = strongPassword();
    const registered = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, password }, remoteAddress: ip });
    expect(registered.statusCode, registered.body).toBe(201);
    const loggedIn = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password }, remoteAddress: ip });
    expect(loggedIn.statusCode, loggedIn.body).toBe(200);
    await spend(1, { remoteAddress: ip });

    // The right password, but the address's budget is spent.
    const rejectionsBefore = await rejectionsByReason(testApp.app);
    const refused = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password }, remoteAddress: ip });
    const retryAfter = expectRefused(refused, 'rate_limited');
    expect([...rejectionsSince(rejectionsBefore, await rejectionsByReason(testApp.app)).values()]).toEqual([1]);
    expect(retryAfter).toBeLessThanOrEqual(AUTH_WINDOW_SECONDS);
    expect(headerValue(refused, 'ratelimit-limit')).toBe(String(AUTH_LIMIT));
    expect(headerValue(refused, 'ratelimit-remaining')).toBe('0');
    expectRefused(await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: uniqueEmail(), password }, remoteAddress: ip }), 'rate_limited');
    expectRefused(await refreshAttempt({ remoteAddress: ip }), 'rate_limited');

    // Another address logs in; the limited one still reaches the routes that are not auth-limited.
    const elsewhere = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password }, remoteAddress: randomIp() });
    expect(elsewhere.statusCode, elsewhere.body).toBe(200);
    const token = elsewhere.json<{ access_token: string }>().access_token;
    const profile = await testApp.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` }, remoteAddress: ip });
    expect(profile.statusCode, profile.body).toBe(200);
  });

  it('sends the limit headers on admitted auth answers too', async () => {
    const ip = randomIp();
    const account = await register(testApp.app, { remoteAddress: randomIp() });
    const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: account.email, password: account.password }, remoteAddress: ip });
    expect(response.statusCode, response.body).toBe(200);
    expectRequestLimitHeaders(response.headers, { limit: AUTH_LIMIT, remaining: AUTH_LIMIT - 1 });
  });

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy: a client cannot pick its bucket', async () => {
    const client = '203.0.113.' + String(1 + Math.floor(Math.random() * 250));
    await spend(AUTH_LIMIT, { remoteAddress: client, forwardedFor: () => randomIp() });
    expectRefused(await refreshAttempt({ remoteAddress: client, forwardedFor: randomIp() }), 'rate_limited');
    expectRefused(await refreshAttempt({ remoteAddress: client, forwardedFor: `${randomIp()}, ${PROXY}` }), 'rate_limited');
  });

  it('behind a trusted proxy, buckets by the client in X-Forwarded-For, not by the proxy', async () => {
    const first = randomIp().replace(/^10\./, '198.');
    const second = randomIp().replace(/^10\./, '192.');
    await spend(AUTH_LIMIT, { remoteAddress: PROXY, forwardedFor: () => first });
    expectRefused(await refreshAttempt({ remoteAddress: PROXY, forwardedFor: first }), 'rate_limited');
    // Another client behind the same proxy has its own budget.
    await spend(AUTH_LIMIT, { remoteAddress: PROXY, forwardedFor: () => second });
    // And a client with the first one's address but no proxy is the same client.
    expectRefused(await refreshAttempt({ remoteAddress: first }), 'rate_limited');
  });

  it('walks X-Forwarded-For from the right: entries a client prepends do not choose its bucket, trusted hops are skipped', async () => {
    const client = randomIp().replace(/^10\./, '198.');
    await spend(1, { remoteAddress: PROXY, forwardedFor: () => `${randomIp()}, ${client}` });
    await spend(1, { remoteAddress: PROXY, forwardedFor: () => `${randomIp()}, ${randomIp()}, ${client}` });
    // Through two proxies of the trusted range: the second hop is skipped too.
    await spend(1, { remoteAddress: PROXY, forwardedFor: () => `${randomIp()}, ${client}, 10.200.3.4` });
    expectRefused(await refreshAttempt({ remoteAddress: PROXY, forwardedFor: client }), 'rate_limited');
  });

  it('buckets IPv6 clients by /64, from the socket and from X-Forwarded-For', async () => {
    const direct = randomIpv6Prefix();
    await spend(1, { remoteAddress: `${direct}::1` });
    await spend(1, { remoteAddress: `${direct}::2` });
    await spend(1, { remoteAddress: `${direct}:ffff:ffff:ffff:ffff` });
    expectRefused(await refreshAttempt({ remoteAddress: `${direct}:0:0:0:99` }), 'rate_limited');
    const [a = '', b = '', c = '', d = ''] = direct.split(':');
    await spend(1, { remoteAddress: `${a}:${b}:${c}:${(parseInt(d, 16) ^ 1).toString(16)}::1` });

    const proxied = randomIpv6Prefix();
    await spend(AUTH_LIMIT, { remoteAddress: PROXY, forwardedFor: () => `${proxied}:${Math.floor(Math.random() * 0xffff).toString(16)}::1` });
    expectRefused(await refreshAttempt({ remoteAddress: PROXY, forwardedFor: `${proxied}::abcd` }), 'rate_limited');
  });

  it('counts an IPv4 client seen as an IPv4-mapped IPv6 address as that IPv4 address', async () => {
    const ip = randomIp().replace(/^10\./, '198.');
    await spend(2, { remoteAddress: `::ffff:${ip}` });
    await spend(1, { remoteAddress: ip });
    expectRefused(await refreshAttempt({ remoteAddress: `::ffff:${ip}` }), 'rate_limited');
  });

  it('does not limit the other auth routes by the auth budget', async () => {
    const account = await register(testApp.app, { remoteAddress: randomIp() });
    const login = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: account.email, password: account.password }, remoteAddress: randomIp() });
    const token = login.json<{ access_token: string }>().access_token;
    const ip = randomIp();
    await spend(AUTH_LIMIT, { remoteAddress: ip });
    for (let index = 0; index < AUTH_LIMIT + 2; index += 1) {
      const response = await testApp.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` }, remoteAddress: ip });
      expect(response.statusCode, response.body).toBe(200);
    }
    expect((await me(testApp.app, token)).statusCode).toBe(200);
  });
});

function headerValue(response: LightMyRequestResponse, name: string): string | undefined {
  const value = response.headers[name];
  return value === undefined ? undefined : String(value);
}
