// Operator endpoints for users: the list with its cursor and filters, changing a role or a status,
// and what a disabled or demoted account can still do (nothing it should not).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  adminCredentials,
  adminEnvironment,
  bearer,
  createApiKey,
  expectError,
  expectUserShape,
  login,
  loginRequest,
  me,
  refreshRequest,
  register,
  relaxedAuthLimits,
  signUp,
  type UserBody,
} from '../helpers/auth-client.js';

interface UserListBody {
  data: UserBody[];
  next_cursor: string | null;
}

describe.each(backends)('admin users (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: { ...relaxedAuthLimits, ...adminEnvironment } });
  });

  afterAll(async () => {
    await testApp.close();
  });

  async function adminToken(): Promise<string> {
    const tokens = await login(testApp.app, adminCredentials);
    expect(tokens.user.role).toBe('admin');
    return tokens.access_token;
  }

  async function listUsers(token: string, query: Record<string, string>): Promise<UserListBody> {
    const response = await testApp.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(token), query });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<UserListBody>();
    expect(Object.keys(body).sort()).toEqual(['data', 'next_cursor']);
    return { ...body, data: body.data.map((user) => withoutLimits(user)) };
  }

  /** Admin views add the user's limits to the user shape: checked here, then set aside. */
  function withoutLimits(body: unknown): UserBody {
    const { limits, effective_limits: effective, ...user } = body as UserBody & { limits: unknown; effective_limits: unknown };
    expect(limits).toMatchObject({ rate_limit_requests: null, token_quota_per_day: null });
    expect(effective).toMatchObject({ requests: expect.any(Number), max_concurrent_streams: expect.any(Number) });
    return user;
  }

  function patchUser(token: string, id: string, payload: Record<string, unknown>) {
    return testApp.app.inject({ method: 'PATCH', url: `/api/admin/users/${id}`, headers: bearer(token), payload });
  }

  it('creates the first admin from ADMIN_EMAIL and ADMIN_PASSWORD at start', async () => {
    const tokens = await login(testApp.app, adminCredentials);
    expect(tokens.user).toMatchObject({ email: adminCredentials.email, role: 'admin', status: 'active' });
  });

  it('pages through every user exactly once with a small limit', async () => {
    const token = await adminToken();
    const created = await Promise.all([0, 1, 2, 3, 4].map(() => register(testApp.app)));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: UserListBody = await listUsers(token, { limit: '2', ...(cursor === null ? {} : { cursor }) });
      expect(page.data.length).toBeLessThanOrEqual(2);
      for (const user of page.data) {
        expectUserShape(user);
        seen.push(user.id);
      }
      cursor = page.next_cursor;
      pages += 1;
      expect(pages, 'the cursor never ends').toBeLessThan(500);
    } while (cursor !== null);

    expect(new Set(seen).size).toBe(seen.length);
    for (const { user } of created) expect(seen).toContain(user.id);
    expect(pages).toBeGreaterThanOrEqual(3);
  });

  it('filters by email, role and status', async () => {
    const token = await adminToken();
    const target = await register(testApp.app);
    const disabled = await register(testApp.app);
    const disabling = await patchUser(token, disabled.user.id, { status: 'disabled' });
    expect(disabling.statusCode, disabling.body).toBe(200);

    const byEmail = await listUsers(token, { email: target.email });
    expect(byEmail.data.map((user) => user.id)).toEqual([target.user.id]);
    expect(byEmail.data[0]).toEqual(target.user);

    const admins = await listUsers(token, { role: 'admin', limit: '100' });
    expect(admins.data.length).toBeGreaterThanOrEqual(1);
    expect(admins.data.every((user) => user.role === 'admin')).toBe(true);
    expect(admins.data.map((user) => user.email)).toContain(adminCredentials.email);

    const users = await listUsers(token, { role: 'user', limit: '100' });
    expect(users.data.every((user) => user.role === 'user')).toBe(true);
    expect(users.data.map((user) => user.email)).not.toContain(adminCredentials.email);

    const disabledUsers = await listUsers(token, { status: 'disabled', limit: '100' });
    expect(disabledUsers.data.every((user) => user.status === 'disabled')).toBe(true);
    expect(disabledUsers.data.map((user) => user.id)).toContain(disabled.user.id);

    const active = await listUsers(token, { status: 'active', email: disabled.email });
    expect(active.data).toEqual([]);
  });

  it('forbids a normal user (403) and refuses no credentials (401)', async () => {
    const signedIn = await signUp(testApp.app);
    const victim = await register(testApp.app);
    expectError(await testApp.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(signedIn.tokens.access_token) }), 403, 'forbidden');
    expectError(await patchUser(signedIn.tokens.access_token, signedIn.user.id, { role: 'admin' }), 403, 'forbidden');
    expectError(await patchUser(signedIn.tokens.access_token, victim.user.id, { status: 'disabled' }), 403, 'forbidden');
    const apiKey = await createApiKey(testApp.app, signedIn.tokens.access_token);
    expectError(await testApp.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(apiKey.key) }), 403, 'forbidden');

    expectError(await testApp.app.inject({ method: 'GET', url: '/api/admin/users' }), 401, 'unauthorized');
    expectError(await testApp.app.inject({ method: 'PATCH', url: `/api/admin/users/${victim.user.id}`, payload: { status: 'disabled' } }), 401, 'unauthorized');

    // Nothing changed.
    const again = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
    expect(again.user.role).toBe('user');
    await login(testApp.app, { email: victim.email, password: victim.password });
  });

  it('PATCH changes role and status and answers the user', async () => {
    const token = await adminToken();
    const target = await register(testApp.app);
    const promoted = await patchUser(token, target.user.id, { role: 'admin' });
    expect(promoted.statusCode, promoted.body).toBe(200);
    expectUserShape(withoutLimits(promoted.json()));
    expect(withoutLimits(promoted.json())).toEqual({ ...target.user, role: 'admin' });

    const both = await patchUser(token, target.user.id, { role: 'user', status: 'disabled' });
    expect(both.statusCode, both.body).toBe(200);
    expect(withoutLimits(both.json())).toEqual({ ...target.user, role: 'user', status: 'disabled' });
  });

  it('disabling a user ends their access token, login and API keys at once; enabling restores login', async () => {
    const token = await adminToken();
    const signedIn = await signUp(testApp.app);
    const apiKey = await createApiKey(testApp.app, signedIn.tokens.access_token);
    expect((await me(testApp.app, signedIn.tokens.access_token)).statusCode).toBe(200);
    expect((await me(testApp.app, apiKey.key)).statusCode).toBe(200);

    const disabling = await patchUser(token, signedIn.user.id, { status: 'disabled' });
    expect(disabling.statusCode, disabling.body).toBe(200);
    expect(disabling.json<UserBody>().status).toBe('disabled');

    expectError(await me(testApp.app, signedIn.tokens.access_token), 401, ['invalid_token', 'unauthorized']);
    expectError(await me(testApp.app, apiKey.key), 401, ['invalid_api_key', 'invalid_token', 'unauthorized']);
    expectError(await loginRequest(testApp.app, { email: signedIn.email, password: signedIn.password }), 403, 'account_disabled');
    // The wrong password says nothing about the account's state.
    expectError(await loginRequest(testApp.app, { email: signedIn.email, password: `${signedIn.password}-wrong` }), 401, 'invalid_credentials');
    const refreshed = await refreshRequest(testApp.app, signedIn.tokens.refresh_token);
    expect([401, 403], refreshed.body).toContain(refreshed.statusCode);
    expectError(refreshed, refreshed.statusCode, ['invalid_refresh_token', 'account_disabled']);

    const enabling = await patchUser(token, signedIn.user.id, { status: 'active' });
    expect(enabling.statusCode, enabling.body).toBe(200);
    const again = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
    expect((await me(testApp.app, again.access_token)).statusCode).toBe(200);
  });

  it('a demoted admin’s old access token no longer reaches the admin routes', async () => {
    const token = await adminToken();
    const target = await register(testApp.app);
    expect((await patchUser(token, target.user.id, { role: 'admin' })).statusCode).toBe(200);
    const asAdmin = await login(testApp.app, { email: target.email, password: target.password });
    expect(asAdmin.user.role).toBe('admin');
    await listUsers(asAdmin.access_token, { limit: '1' });

    expect((await patchUser(token, target.user.id, { role: 'user' })).statusCode).toBe(200);
    const refused = await testApp.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(asAdmin.access_token) });
    expect([401, 403], refused.body).toContain(refused.statusCode);
    expectError(refused, refused.statusCode, ['invalid_token', 'unauthorized', 'forbidden']);
    const patchAttempt = await patchUser(asAdmin.access_token, target.user.id, { role: 'admin' });
    expect([401, 403], patchAttempt.body).toContain(patchAttempt.statusCode);
    const relogin = await login(testApp.app, { email: target.email, password: target.password });
    expect(relogin.user.role).toBe('user');
  });

  it('refuses unknown fields and bad values with 400, and a missing user with 404', async () => {
    const token = await adminToken();
    const target = await register(testApp.app);
    expect(expectError(await patchUser(token, target.user.id, { role: 'admin', password: 'x' }), 400, 'validation_failed').error.param).toBe('password');
    expect(expectError(await patchUser(token, target.user.id, { email: 'taken@example.com' }), 400, 'validation_failed').error.param).toBe('email');
    expect(expectError(await patchUser(token, target.user.id, { role: 'superuser' }), 400, 'validation_failed').error.param).toBe('role');
    expect(expectError(await patchUser(token, target.user.id, { status: 'banned' }), 400, 'validation_failed').error.param).toBe('status');
    expectError(await patchUser(token, randomUUID(), { status: 'disabled' }), 404, 'not_found');

    const unchanged = await listUsers(token, { email: target.email });
    expect(unchanged.data).toEqual([target.user]);
  });
});
