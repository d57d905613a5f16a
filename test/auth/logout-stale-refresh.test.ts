// Logging out with only a refresh token needs the current one: a rotated copy ends nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { me, refreshRequest, signUp } from '../helpers/auth-client.js';

describe.each(backends)('logout with a stale refresh token (%s)', (backend) => {
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: { REFRESH_REUSE_GRACE_SECONDS: '0' } });
  });
  afterAll(async () => {
    await testApp.close();
  });

  it('refuses a rotated refresh token and leaves the session open', async () => {
    const user = await signUp(testApp.app);
    const rotated = await refreshRequest(testApp.app, user.tokens.refresh_token);
    expect(rotated.statusCode, rotated.body).toBe(200);
    const fresh = rotated.json<{ access_token: string; refresh_token: string }>();

    const logout = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refresh_token: user.tokens.refresh_token } });
    expect(logout.statusCode).toBe(401);
    expect(logout.json().error.code).toBe('invalid_refresh_token');
    // The owner's session is untouched.
    expect((await me(testApp.app, fresh.access_token)).statusCode).toBe(200);
    expect((await refreshRequest(testApp.app, fresh.refresh_token)).statusCode).toBe(200);
  });
});
