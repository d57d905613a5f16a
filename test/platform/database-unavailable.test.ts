// PostgreSQL going away under a running gateway: requests that need it are answered 503
// service_unavailable with Retry-After (never a 500), and the same requests succeed once it is
// back. The shared PostgreSQL cannot be stopped under the other test files, so the gateway talks
// to it through a TCP proxy that the test cuts (closes every connection and stops listening).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { bearer, createApiKey, expectError, loginRequest, randomIp, relaxedAuthLimits, signUp } from '../helpers/auth-client.js';
import { hasRealServices, testDatabaseUrl } from '../helpers/environment.js';
import { startTcpProxy, type TcpProxy } from '../helpers/limits-fixtures.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

function expectDatabaseUnavailable(response: LightMyRequestResponse, what: string): void {
  expect(response.statusCode, `${what}: ${response.body}`).toBe(503);
  const body = expectError(response, 503, 'service_unavailable');
  expect(body.error.type).toBe('server_error');
  expect(response.headers['retry-after'], `${what}: retry-after`).toBe('1');
}

describe.skipIf(!hasRealServices)('PostgreSQL unreachable behind a running gateway', () => {
  let proxy: TcpProxy;
  let testApp: TestApp;

  beforeAll(async () => {
    proxy = await startTcpProxy(testDatabaseUrl!);
    // Migrations and everything after go through the proxy.
    testApp = await createTestApp({ backend: 'real', environment: { ...relaxedAuthLimits, DATABASE_URL: proxy.redisUrl } });
  });

  afterAll(async () => {
    await proxy.restore();
    await testApp.close();
    await proxy.close();
  });

  it('answers 503 with Retry-After while the database is cut, and 200 again once it is back', async () => {
    const { app } = testApp;
    const user = await signUp(app, { remoteAddress: randomIp() });
    const key = await createApiKey(app, user.tokens.access_token, 'outage');
    const conversations = (credential: string) => app.inject({ method: 'GET', url: '/api/conversations', headers: bearer(credential) });
    const login = () => loginRequest(app, { email: user.email, password: user.password, remoteAddress: randomIp() });

    const before = await conversations(user.tokens.access_token);
    expect(before.statusCode, before.body).toBe(200);

    await proxy.cut();
    try {
      // The token's state may still be cached in Redis: the route's own query meets the outage.
      expectDatabaseUnavailable(await conversations(user.tokens.access_token), 'access token');
      // The key was never used: its check itself needs PostgreSQL.
      expectDatabaseUnavailable(await conversations(key.key), 'API key');
      expectDatabaseUnavailable(await login(), 'login');
      // Every answer during the outage, even a burst of them, is a 503, not a 500.
      const burst = await Promise.all(Array.from({ length: 10 }, () => conversations(user.tokens.access_token)));
      for (const response of burst) expectDatabaseUnavailable(response, 'burst');
    } finally {
      await proxy.restore();
    }

    const after = await conversations(user.tokens.access_token);
    expect(after.statusCode, after.body).toBe(200);
    expect(after.headers['retry-after']).toBeUndefined();
    const withKey = await conversations(key.key);
    expect(withKey.statusCode, withKey.body).toBe(200);
    expect((await login()).statusCode).toBe(200);
  });
});
