// Secrets never reach the logs: after a full account life cycle with debug logging, no captured line
// holds a password, an access token, a refresh token or an API key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  bearer,
  createApiKey,
  expectError,
  login,
  loginRequest,
  me,
  refreshRequest,
  register,
  relaxedAuthLimits,
  strongPassword,
  type TokenBody,
} from '../helpers/auth-client.js';

describe.each(backends)('secrets in logs (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: relaxedAuthLimits, captureLogs: true });
  });

  afterAll(async () => {
    await testApp.close();
  });

  it('logs no password, token or key through register, login, refresh, password change and keys', async () => {
    const app = testApp.app;
    const secrets: Array<[string, string]> = [];
    const remember = (what: string, value: string): string => {
      secrets.push([what, value]);
      return value;
    };

    const registered = await register(app, { password: remember('password', strongPassword()) });
    const wrongPassword = remember('wrong password', strongPassword());
    expectError(await loginRequest(app, { email: registered.email, password: wrongPassword }), 401, 'invalid_credentials');
    const tokens = await login(app, { email: registered.email, password: registered.password });
    remember('access token', tokens.access_token);
    remember('refresh token', tokens.refresh_token);
    expect((await me(app, tokens.access_token)).statusCode).toBe(200);

    const refreshed = await refreshRequest(app, tokens.refresh_token);
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    const rotated = refreshed.json<TokenBody>();
    remember('rotated access token', rotated.access_token);
    remember('rotated refresh token', rotated.refresh_token);
    // A refused refresh token is a secret too (it may be a real one presented twice).
    expectError(await refreshRequest(app, remember('bogus refresh token', `bogus-${strongPassword()}`)), 401, 'invalid_refresh_token');

    const apiKey = await createApiKey(app, rotated.access_token);
    remember('API key', apiKey.key);
    expect((await me(app, apiKey.key)).statusCode).toBe(200);
    expectError(await me(app, remember('unknown API key', `vcg_${strongPassword()}`)), 401, 'invalid_api_key');

    const newPassword = remember('new password', strongPassword());
    const change = await app.inject({
      method: 'POST',
      url: '/api/auth/password',
      headers: bearer(rotated.access_token),
      payload: { current_password: registered.password, new_password: newPassword },
    });
    expect(change.statusCode, change.body).toBe(204);
    const afterChange = await login(app, { email: registered.email, password: newPassword });
    remember('access token after the change', afterChange.access_token);
    const logout = await app.inject({
      method: 'POST',
      url: '/api/auth/logout',
      headers: bearer(afterChange.access_token),
      payload: { refresh_token: remember('refresh token after the change', afterChange.refresh_token) },
    });
    expect(logout.statusCode, logout.body).toBe(204);

    // The capture works: every request above left its line.
    expect(testApp.logs.some((line) => line.includes('/api/auth/login'))).toBe(true);
    expect(testApp.logs.some((line) => line.includes('/api/auth/password'))).toBe(true);
    expect(testApp.logs.some((line) => line.includes('/api/keys'))).toBe(true);

    for (const [what, value] of secrets) {
      const leaking = testApp.logs.filter((line) => line.includes(value));
      expect(leaking, `the ${what} appears in the log`).toEqual([]);
    }
    // Nor does a recognisable piece of one (a JWT's signature, a key's secret tail).
    for (const [what, value] of secrets) {
      const tail = value.slice(-20);
      expect(testApp.logs.filter((line) => line.includes(tail)), `the end of the ${what} appears in the log`).toEqual([]);
    }
  });
});
