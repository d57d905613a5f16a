// Two gateway instances on one PostgreSQL and one Redis, as behind a load balancer: a revocation
// or a disabled account on one must hold on the other at once, even where the other has already
// seen (and may have cached) the credential.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRealServices } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  adminCredentials,
  adminEnvironment,
  bearer,
  createApiKey,
  expectError,
  login,
  loginRequest,
  me,
  refreshRequest,
  relaxedAuthLimits,
  signUp,
  type UserBody,
} from '../helpers/auth-client.js';

describe.skipIf(!hasRealServices)('two instances sharing PostgreSQL and Redis', () => {
  let first: TestApp;
  let second: TestApp;

  beforeAll(async () => {
    const environment = { ...relaxedAuthLimits, ...adminEnvironment };
    first = await createTestApp({ backend: 'real', environment });
    second = await createTestApp({ backend: 'real', environment, sharing: first });
  });

  afterAll(async () => {
    await second.close();
    await first.close();
  });

  /** The credential works on the second instance now (and may be cached there). */
  async function expectAcceptedOnSecond(credential: string, userId: string): Promise<void> {
    const response = await me(second.app, credential);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<UserBody>().id).toBe(userId);
  }

  it('accepts on one instance the tokens and refresh tokens issued by the other', async () => {
    const signedIn = await signUp(first.app);
    await expectAcceptedOnSecond(signedIn.tokens.access_token, signedIn.user.id);
    const refreshed = await refreshRequest(second.app, signedIn.tokens.refresh_token);
    expect(refreshed.statusCode, refreshed.body).toBe(200);
  });

  it('a logout on the first ends the access token on the second at once', async () => {
    const signedIn = await signUp(first.app);
    await expectAcceptedOnSecond(signedIn.tokens.access_token, signedIn.user.id);
    const logout = await first.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(signedIn.tokens.access_token) });
    expect(logout.statusCode, logout.body).toBe(204);
    expectError(await me(second.app, signedIn.tokens.access_token), 401, 'invalid_token');
    expectError(await refreshRequest(second.app, signedIn.tokens.refresh_token), 401, 'invalid_refresh_token');
  });

  it('a logout-all on the first ends every session on the second', async () => {
    const signedIn = await signUp(first.app);
    const other = await login(second.app, { email: signedIn.email, password: signedIn.password });
    await expectAcceptedOnSecond(signedIn.tokens.access_token, signedIn.user.id);
    await expectAcceptedOnSecond(other.access_token, signedIn.user.id);
    const logoutAll = await first.app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(signedIn.tokens.access_token) });
    expect(logoutAll.statusCode, logoutAll.body).toBe(204);
    expectError(await me(second.app, signedIn.tokens.access_token), 401, 'invalid_token');
    expectError(await me(second.app, other.access_token), 401, 'invalid_token');
  });

  it('a session deleted on the first ends on the second', async () => {
    const signedIn = await signUp(first.app);
    const other = await login(second.app, { email: signedIn.email, password: signedIn.password });
    await expectAcceptedOnSecond(other.access_token, signedIn.user.id);
    const sessions = await first.app.inject({ method: 'GET', url: '/api/auth/sessions', headers: bearer(signedIn.tokens.access_token) });
    expect(sessions.statusCode, sessions.body).toBe(200);
    const otherSession = sessions.json<{ data: Array<{ id: string; current: boolean }> }>().data.find((session) => !session.current);
    expect(otherSession).toBeDefined();
    const deleted = await first.app.inject({ method: 'DELETE', url: `/api/auth/sessions/${otherSession!.id}`, headers: bearer(signedIn.tokens.access_token) });
    expect(deleted.statusCode, deleted.body).toBe(204);
    expectError(await me(second.app, other.access_token), 401, 'invalid_token');
  });

  it('an API key revoked on the first fails on the second', async () => {
    const signedIn = await signUp(first.app);
    const apiKey = await createApiKey(first.app, signedIn.tokens.access_token);
    await expectAcceptedOnSecond(apiKey.key, signedIn.user.id);
    const revoke = await first.app.inject({ method: 'DELETE', url: `/api/keys/${apiKey.id}`, headers: bearer(signedIn.tokens.access_token) });
    expect(revoke.statusCode, revoke.body).toBe(204);
    expectError(await me(second.app, apiKey.key), 401, 'invalid_api_key');
  });

  it('a user disabled through the first is refused on the second', async () => {
    const signedIn = await signUp(first.app);
    const apiKey = await createApiKey(first.app, signedIn.tokens.access_token);
    await expectAcceptedOnSecond(signedIn.tokens.access_token, signedIn.user.id);
    await expectAcceptedOnSecond(apiKey.key, signedIn.user.id);

    const admin = await login(first.app, adminCredentials);
    const disable = await first.app.inject({
      method: 'PATCH',
      url: `/api/admin/users/${signedIn.user.id}`,
      headers: bearer(admin.access_token),
      payload: { status: 'disabled' },
    });
    expect(disable.statusCode, disable.body).toBe(200);

    expectError(await me(second.app, signedIn.tokens.access_token), 401, ['invalid_token', 'unauthorized']);
    expectError(await me(second.app, apiKey.key), 401, ['invalid_api_key', 'invalid_token', 'unauthorized']);
    expectError(await loginRequest(second.app, { email: signedIn.email, password: signedIn.password }), 403, 'account_disabled');
  });

  it('a demotion through the first holds on the second', async () => {
    const admin = await login(first.app, adminCredentials);
    const target = await signUp(first.app);
    const promote = await first.app.inject({ method: 'PATCH', url: `/api/admin/users/${target.user.id}`, headers: bearer(admin.access_token), payload: { role: 'admin' } });
    expect(promote.statusCode, promote.body).toBe(200);
    const asAdmin = await login(second.app, { email: target.email, password: target.password });
    const allowed = await second.app.inject({ method: 'GET', url: '/api/admin/users?limit=1', headers: bearer(asAdmin.access_token) });
    expect(allowed.statusCode, allowed.body).toBe(200);

    const demote = await first.app.inject({ method: 'PATCH', url: `/api/admin/users/${target.user.id}`, headers: bearer(admin.access_token), payload: { role: 'user' } });
    expect(demote.statusCode, demote.body).toBe(200);
    const refused = await second.app.inject({ method: 'GET', url: '/api/admin/users?limit=1', headers: bearer(asAdmin.access_token) });
    expect([401, 403], refused.body).toContain(refused.statusCode);
  });
});
