// Sessions over HTTP: refresh-token rotation and reuse detection, logout, logout-all, the session
// list and revoking one session, and a password change that ends every old session.
import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  bearer,
  expectError,
  expectUserShape,
  isoTimestampPattern,
  login,
  loginRequest,
  me,
  randomIp,
  refreshRequest,
  relaxedAuthLimits,
  signUp,
  strongPassword,
  uuidPattern,
  type TokenBody,
} from '../helpers/auth-client.js';
import type { App } from '../../src/app.js';

interface SessionBody {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  user_agent: string | null;
  ip: string | null;
  current: boolean;
}

function sessionIdOf(accessToken: string): string {
  const sid = decodeJwt(accessToken).sid;
  if (typeof sid !== 'string') throw new Error('access token without sid');
  return sid;
}

async function listSessions(app: App, accessToken: string): Promise<{ data: SessionBody[]; next_cursor: string | null }> {
  const response = await app.inject({ method: 'GET', url: '/api/auth/sessions', headers: bearer(accessToken) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<{ data: SessionBody[]; next_cursor: string | null }>();
}

/** Both halves of a session no longer work: the access token and the refresh token. */
async function expectSessionEnded(app: App, tokens: TokenBody): Promise<void> {
  expectError(await me(app, tokens.access_token), 401, 'invalid_token');
  expectError(await refreshRequest(app, tokens.refresh_token), 401, 'invalid_refresh_token');
}

describe.each(backends)('refresh tokens and sessions (%s)', (backend) => {
  let testApp: TestApp;
  let noGrace: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: relaxedAuthLimits });
    noGrace = await createTestApp({ backend, environment: { ...relaxedAuthLimits, REFRESH_REUSE_GRACE_SECONDS: '0' } });
  });

  afterAll(async () => {
    await testApp.close();
    await noGrace.close();
  });

  describe('POST /api/auth/refresh', () => {
    it('answers new tokens and rotates the refresh token', async () => {
      const signedIn = await signUp(testApp.app);
      const response = await refreshRequest(testApp.app, signedIn.tokens.refresh_token);
      expect(response.statusCode, response.body).toBe(200);
      const body = response.json<TokenBody>();
      expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'token_type', 'user']);
      expect(body.token_type).toBe('bearer');
      expect(body.expires_in).toBeGreaterThan(0);
      expect(body.refresh_token).not.toBe(signedIn.tokens.refresh_token);
      expect(body.access_token).not.toBe(signedIn.tokens.access_token);
      expectUserShape(body.user);
      expect(body.user).toEqual(signedIn.user);
      // Same session, new tokens: the new access token works and the new refresh token rotates again.
      expect(sessionIdOf(body.access_token)).toBe(sessionIdOf(signedIn.tokens.access_token));
      const meResponse = await me(testApp.app, body.access_token);
      expect(meResponse.statusCode, meResponse.body).toBe(200);
      const next = await refreshRequest(testApp.app, body.refresh_token);
      expect(next.statusCode, next.body).toBe(200);
    });

    it('refuses an unknown refresh token and an access token with 401 invalid_refresh_token', async () => {
      const signedIn = await signUp(testApp.app);
      expectError(await refreshRequest(testApp.app, 'not-a-refresh-token-at-all-0123456789'), 401, 'invalid_refresh_token');
      expectError(await refreshRequest(testApp.app, signedIn.tokens.access_token.slice(0, 200)), 401, 'invalid_refresh_token');
      // A damaged copy of a real one is not accepted either.
      const real = signedIn.tokens.refresh_token;
      const damaged = `${real.slice(0, -1)}${real.endsWith('A') ? 'B' : 'A'}`;
      expectError(await refreshRequest(testApp.app, damaged), 401, 'invalid_refresh_token');
    });

    it('refuses a missing token and unknown fields with 400 validation_failed', async () => {
      const signedIn = await signUp(testApp.app);
      const empty = await testApp.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: {} });
      expect(expectError(empty, 400, 'validation_failed').error.param).toBe('refresh_token');
      const extra = await testApp.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: signedIn.tokens.refresh_token, user_id: randomUUID() } });
      expect(expectError(extra, 400, 'validation_failed').error.param).toBe('user_id');
    });

    it('lets two refreshes with the same token at once both succeed inside the grace window', async () => {
      const signedIn = await signUp(testApp.app);
      const [first, second] = await Promise.all([
        refreshRequest(testApp.app, signedIn.tokens.refresh_token),
        refreshRequest(testApp.app, signedIn.tokens.refresh_token),
      ]);
      expect(first.statusCode, first.body).toBe(200);
      expect(second.statusCode, second.body).toBe(200);
      for (const answer of [first, second]) {
        const meResponse = await me(testApp.app, answer.json<TokenBody>().access_token);
        expect(meResponse.statusCode, meResponse.body).toBe(200);
      }
    });

    it('treats reuse of a rotated token after the grace window as theft and revokes the whole family', async () => {
      const signedIn = await signUp(noGrace.app);
      const rotated = await refreshRequest(noGrace.app, signedIn.tokens.refresh_token);
      expect(rotated.statusCode, rotated.body).toBe(200);
      const newest = rotated.json<TokenBody>();

      expectError(await refreshRequest(noGrace.app, signedIn.tokens.refresh_token), 401, 'invalid_refresh_token');
      // The newest refresh token of that login is dead too, and so is every access token of the session.
      expectError(await refreshRequest(noGrace.app, newest.refresh_token), 401, 'invalid_refresh_token');
      expectError(await me(noGrace.app, newest.access_token), 401, 'invalid_token');
      expectError(await me(noGrace.app, signedIn.tokens.access_token), 401, 'invalid_token');
      // The password still works: reuse ends the session, not the account.
      await login(noGrace.app, { email: signedIn.email, password: signedIn.password });
    });
  });

  describe('POST /api/auth/logout', () => {
    it('with the access token ends this session (both tokens) and only this one', async () => {
      const signedIn = await signUp(testApp.app);
      const other = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(signedIn.tokens.access_token) });
      expect(response.statusCode, response.body).toBe(204);
      expect(response.body).toBe('');
      await expectSessionEnded(testApp.app, signedIn.tokens);
      const otherMe = await me(testApp.app, other.access_token);
      expect(otherMe.statusCode, otherMe.body).toBe(200);
    });

    it('with the access token and the refresh token in the body ends the session', async () => {
      const signedIn = await signUp(testApp.app);
      const response = await testApp.app.inject({
        method: 'POST',
        url: '/api/auth/logout',
        headers: bearer(signedIn.tokens.access_token),
        payload: { refresh_token: signedIn.tokens.refresh_token },
      });
      expect(response.statusCode, response.body).toBe(204);
      await expectSessionEnded(testApp.app, signedIn.tokens);
    });

    it('with only the refresh token in the body ends that session', async () => {
      const signedIn = await signUp(testApp.app);
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refresh_token: signedIn.tokens.refresh_token } });
      expect(response.statusCode, response.body).toBe(204);
      await expectSessionEnded(testApp.app, signedIn.tokens);
    });

    it('with neither an access token nor a refresh token is 401', async () => {
      const empty = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout', payload: {} });
      expectError(empty, 401, 'unauthorized');
      const bodiless = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout' });
      expectError(bodiless, 401, 'unauthorized');
    });
  });

  describe('POST /api/auth/logout-all', () => {
    it('ends every session of the user, other sessions included', async () => {
      const signedIn = await signUp(testApp.app);
      const second = await login(testApp.app, { email: signedIn.email, password: signedIn.password, remoteAddress: randomIp() });
      const bystander = await signUp(testApp.app);

      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(signedIn.tokens.access_token) });
      expect(response.statusCode, response.body).toBe(204);
      await expectSessionEnded(testApp.app, signedIn.tokens);
      await expectSessionEnded(testApp.app, second);
      // Another user's session is untouched, and the password still logs in.
      const bystanderMe = await me(testApp.app, bystander.tokens.access_token);
      expect(bystanderMe.statusCode, bystanderMe.body).toBe(200);
      const fresh = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
      expect((await me(testApp.app, fresh.access_token)).statusCode).toBe(200);
    });

    it('needs an access token', async () => {
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout-all' });
      expectError(response, 401, 'unauthorized');
    });
  });

  describe('GET and DELETE /api/auth/sessions', () => {
    it('lists only the caller’s active sessions, marking the current one', async () => {
      const firstIp = randomIp();
      const secondIp = randomIp();
      const signedIn = await signUp(testApp.app, { remoteAddress: firstIp, userAgent: 'first-agent/1.0' });
      const second = await login(testApp.app, { email: signedIn.email, password: signedIn.password, remoteAddress: secondIp, userAgent: 'second-agent/2.0' });
      const stranger = await signUp(testApp.app);

      const list = await listSessions(testApp.app, signedIn.tokens.access_token);
      expect(list.next_cursor).toBeNull();
      expect(list.data).toHaveLength(2);
      for (const session of list.data) {
        expect(Object.keys(session).sort()).toEqual(['created_at', 'current', 'expires_at', 'id', 'ip', 'last_used_at', 'user_agent']);
        expect(session.id).toMatch(uuidPattern);
        expect(session.created_at).toMatch(isoTimestampPattern);
        expect(session.last_used_at).toMatch(isoTimestampPattern);
        expect(session.expires_at).toMatch(isoTimestampPattern);
        expect(Date.parse(session.expires_at)).toBeGreaterThan(Date.now());
      }
      const firstId = sessionIdOf(signedIn.tokens.access_token);
      const secondId = sessionIdOf(second.access_token);
      const byId = new Map(list.data.map((session) => [session.id, session]));
      expect(byId.get(firstId)).toMatchObject({ current: true, ip: firstIp, user_agent: 'first-agent/1.0' });
      expect(byId.get(secondId)).toMatchObject({ current: false, ip: secondIp, user_agent: 'second-agent/2.0' });
      expect(byId.has(sessionIdOf(stranger.tokens.access_token))).toBe(false);
      expect(JSON.stringify(list)).not.toContain(signedIn.tokens.refresh_token);

      // Seen from the second session, the same two with the other one current.
      const fromSecond = await listSessions(testApp.app, second.access_token);
      expect(fromSecond.data.filter((session) => session.current).map((session) => session.id)).toEqual([secondId]);
    });

    it('leaves ended sessions out of the list', async () => {
      const signedIn = await signUp(testApp.app);
      const second = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
      const logout = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(second.access_token) });
      expect(logout.statusCode, logout.body).toBe(204);
      const list = await listSessions(testApp.app, signedIn.tokens.access_token);
      expect(list.data.map((session) => session.id)).toEqual([sessionIdOf(signedIn.tokens.access_token)]);
    });

    it('DELETE ends that session’s tokens and keeps the caller’s own', async () => {
      const signedIn = await signUp(testApp.app);
      const second = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
      const response = await testApp.app.inject({
        method: 'DELETE',
        url: `/api/auth/sessions/${sessionIdOf(second.access_token)}`,
        headers: bearer(signedIn.tokens.access_token),
      });
      expect(response.statusCode, response.body).toBe(204);
      await expectSessionEnded(testApp.app, second);
      expect((await me(testApp.app, signedIn.tokens.access_token)).statusCode).toBe(200);
      const list = await listSessions(testApp.app, signedIn.tokens.access_token);
      expect(list.data.map((session) => session.id)).toEqual([sessionIdOf(signedIn.tokens.access_token)]);
    });

    it('answers 404 for another user’s session, a random uuid and a non-uuid, and ends nothing', async () => {
      const signedIn = await signUp(testApp.app);
      const victim = await signUp(testApp.app);
      for (const id of [sessionIdOf(victim.tokens.access_token), randomUUID(), 'not-a-uuid']) {
        const response = await testApp.app.inject({ method: 'DELETE', url: `/api/auth/sessions/${id}`, headers: bearer(signedIn.tokens.access_token) });
        expectError(response, 404, 'not_found');
      }
      expect((await me(testApp.app, victim.tokens.access_token)).statusCode).toBe(200);
      const refreshed = await refreshRequest(testApp.app, victim.tokens.refresh_token);
      expect(refreshed.statusCode, refreshed.body).toBe(200);
    });

    it('needs an access token', async () => {
      expectError(await testApp.app.inject({ method: 'GET', url: '/api/auth/sessions' }), 401, 'unauthorized');
      expectError(await testApp.app.inject({ method: 'DELETE', url: `/api/auth/sessions/${randomUUID()}` }), 401, 'unauthorized');
    });
  });

  describe('POST /api/auth/password', () => {
    function changePassword(app: App, accessToken: string, body: Record<string, string>) {
      return app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(accessToken), payload: body });
    }

    it('changes the password and ends every old session', async () => {
      const signedIn = await signUp(testApp.app);
      const second = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
      const newPassword = strongPassword();
      const response = await changePassword(testApp.app, signedIn.tokens.access_token, { current_password: signedIn.password, new_password: newPassword });
      expect(response.statusCode, response.body).toBe(204);

      await expectSessionEnded(testApp.app, signedIn.tokens);
      await expectSessionEnded(testApp.app, second);
      expectError(await loginRequest(testApp.app, { email: signedIn.email, password: signedIn.password }), 401, 'invalid_credentials');
      const fresh = await login(testApp.app, { email: signedIn.email, password: newPassword });
      expect(fresh.user.id).toBe(signedIn.user.id);
    });

    it('refuses a wrong current password with 401 invalid_credentials and changes nothing', async () => {
      const signedIn = await signUp(testApp.app);
      const response = await changePassword(testApp.app, signedIn.tokens.access_token, { current_password: `${signedIn.password}-wrong`, new_password: strongPassword() });
      expectError(response, 401, 'invalid_credentials');
      expect((await me(testApp.app, signedIn.tokens.access_token)).statusCode).toBe(200);
      await login(testApp.app, { email: signedIn.email, password: signedIn.password });
    });

    it.each([
      ['a common password', 'password123'],
      ['a short password', 'aB3$xyz'],
      ['a password over 256 characters', 'x'.repeat(257)],
    ])('refuses %s as the new one with 400 param new_password', async (_name, newPassword) => {
      const signedIn = await signUp(testApp.app);
      const response = await changePassword(testApp.app, signedIn.tokens.access_token, { current_password: signedIn.password, new_password: newPassword });
      expect(expectError(response, 400, 'validation_failed').error.param).toBe('new_password');
      await login(testApp.app, { email: signedIn.email, password: signedIn.password });
    });

    it('refuses unknown fields and needs an access token', async () => {
      const signedIn = await signUp(testApp.app);
      const extra = await changePassword(testApp.app, signedIn.tokens.access_token, {
        current_password: signedIn.password,
        new_password: strongPassword(),
        email: 'someone-else@example.com',
      });
      expect(expectError(extra, 400, 'validation_failed').error.param).toBe('email');
      const anonymous = await testApp.app.inject({
        method: 'POST',
        url: '/api/auth/password',
        payload: { current_password: signedIn.password, new_password: strongPassword() },
      });
      expectError(anonymous, 401, 'unauthorized');
    });
  });
});
