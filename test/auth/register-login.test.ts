// Registration and login over HTTP: the user shape, email normalisation, password rules (length,
// no truncation, common passwords), identical and equally slow login failures, and the body limit.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  bearer,
  expectError,
  expectUserShape,
  login,
  loginRequest,
  me,
  randomIp,
  register,
  relaxedAuthLimits,
  signUp,
  strongPassword,
  uniqueEmail,
  type TokenBody,
  type UserBody,
} from '../helpers/auth-client.js';

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

describe.each(backends)('registration and login (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: relaxedAuthLimits });
  });

  afterAll(async () => {
    await testApp.close();
  });

  describe('POST /api/auth/register', () => {
    it('creates a user and answers 201 with the user shape, never a password or hash', async () => {
      const email = uniqueEmail('shape');
      const password = strongPassword();
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, password, display_name: 'Ada' } });
      expect(response.statusCode, response.body).toBe(201);
      expect(response.headers['x-request-id']).toEqual(expect.any(String));
      const user = response.json<UserBody>();
      expectUserShape(user);
      expect(user).toMatchObject({ email, display_name: 'Ada', role: 'user', status: 'active' });
      expect(response.body).not.toContain(password);
      expect(response.body).not.toMatch(/argon|hash/i);
    });

    it('answers display_name null when none is given', async () => {
      const { user } = await register(testApp.app);
      expect(user.display_name).toBeNull();
    });

    it('trims and lower-cases the email for uniqueness: the same address in another case is a 409', async () => {
      const local = `Alice-${randomBytes(4).toString('hex')}`;
      const padded = `  ${local}@Example.COM `;
      const normalised = `${local.toLowerCase()}@example.com`;
      const first = await register(testApp.app, { email: padded });
      expect(first.user.email.toLowerCase()).toBe(normalised);

      const again = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: normalised, password: strongPassword() } });
      expectError(again, 409, 'conflict');

      const sameCase = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: padded, password: strongPassword() } });
      expectError(sameCase, 409, 'conflict');

      // The first password still logs in, under any spelling of the address.
      const tokens = await login(testApp.app, { email: normalised, password: first.password });
      expect(tokens.user.id).toBe(first.user.id);
      const shouted = await login(testApp.app, { email: normalised.toUpperCase(), password: first.password });
      expect(shouted.user.id).toBe(first.user.id);
    });

    it.each(['role', 'is_admin'])('refuses the unknown field %s with 400 validation_failed', async (field) => {
      const email = uniqueEmail('privilege');
      const response = await testApp.app.inject({
        method: 'POST',
        url: '/api/auth/register',
        payload: { email, password: strongPassword(), [field]: field === 'role' ? 'admin' : true },
      });
      const body = expectError(response, 400, 'validation_failed');
      expect(body.error.param).toBe(field);
      // Nothing was created: the address is still free.
      await register(testApp.app, { email });
    });

    it.each([
      ['__proto__', '{"role":"admin"}'],
      ['constructor', '{"prototype":{"role":"admin"}}'],
    ])('never makes an admin out of a "%s" key in the JSON body', async (key, value) => {
      const email = uniqueEmail('pollute');
      const password = strongPassword();
      const raw = `{"email":${JSON.stringify(email)},"password":${JSON.stringify(password)},${JSON.stringify(key)}:${value}}`;
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', headers: { 'content-type': 'application/json' }, payload: raw });

      expect([201, 400], response.body).toContain(response.statusCode);
      if (response.statusCode === 400) {
        expectError(response, 400, ['validation_failed', 'invalid_json', 'invalid_request']);
      } else {
        expect(response.json<UserBody>().role).toBe('user');
        const tokens = await login(testApp.app, { email, password });
        expect(tokens.user.role).toBe('user');
        const admin = await testApp.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(tokens.access_token) });
        expectError(admin, 403, 'forbidden');
      }
      expect(({} as Record<string, unknown>).role).toBeUndefined();
    });

    it('requires an email and a password', async () => {
      const noEmail = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { password: strongPassword() } });
      expect(expectError(noEmail, 400, 'validation_failed').error.param).toBe('email');
      const noPassword = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: uniqueEmail() } });
      expect(expectError(noPassword, 400, 'validation_failed').error.param).toBe('password');
    });

    it('answers malformed JSON with 400 invalid_json', async () => {
      const response = await testApp.app.inject({
        method: 'POST',
        url: '/api/auth/register',
        headers: { 'content-type': 'application/json' },
        payload: '{"email": "a@example.com", "password": ',
      });
      expectError(response, 400, 'invalid_json');
    });

    it('refuses a password under 8 characters', async () => {
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: uniqueEmail(), password: 'Xy7#pQ2' } });
      expect(expectError(response, 400, 'validation_failed').error.param).toBe('password');
    });

    it('accepts a 256-character password and logs in with it, and refuses 257', async () => {
      const longest = randomBytes(128).toString('hex');
      expect(longest).toHaveLength(256);
      const registered = await register(testApp.app, { password: longest });
      const tokens = await login(testApp.app, { email: registered.email, password: longest });
      expect(tokens.user.id).toBe(registered.user.id);

      const tooLong = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: uniqueEmail(), password: `${longest}x` } });
      expect(expectError(tooLong, 400, 'validation_failed').error.param).toBe('password');
    });

    it('never truncates a password: the same first 72 bytes with another ending do not log in', async () => {
      const head = randomBytes(36).toString('hex');
      expect(Buffer.byteLength(head)).toBe(72);
      const registered = await register(testApp.app, { password: `${head}-the-real-ending` });
      const ip = randomIp();

      for (const attempt of [`${head}-another-ending`, head, `${head}-the-real-endinG`]) {
        const response = await loginRequest(testApp.app, { email: registered.email, password: attempt, remoteAddress: ip });
        expectError(response, 401, 'invalid_credentials');
      }
      const tokens = await login(testApp.app, { email: registered.email, password: registered.password, remoteAddress: randomIp() });
      expect(tokens.user.id).toBe(registered.user.id);
    });

    it('accepts a non-ASCII password and logs in with exactly it', async () => {
      const password = `пароль-密码-${randomBytes(4).toString('hex')}`;
      const registered = await register(testApp.app, { password });
      const tokens = await login(testApp.app, { email: registered.email, password });
      expect(tokens.user.id).toBe(registered.user.id);
      const other = await loginRequest(testApp.app, { email: registered.email, password: password.replace('密', '蜜'), remoteAddress: randomIp() });
      expectError(other, 401, 'invalid_credentials');
    });

    it.each(['password123', '12345678', 'qwertyuiop'])('refuses the common password %s with param password', async (password) => {
      const email = uniqueEmail('common');
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, password } });
      expect(expectError(response, 400, 'validation_failed').error.param).toBe('password');
      // Nothing was created: the address can still register with a good password.
      await register(testApp.app, { email });
    });
  });

  describe('POST /api/auth/login', () => {
    it('answers 200 with the tokens and the user', async () => {
      const registered = await register(testApp.app, { displayName: 'Grace' });
      const response = await loginRequest(testApp.app, { email: registered.email, password: registered.password });
      expect(response.statusCode, response.body).toBe(200);
      expect(response.headers['x-request-id']).toEqual(expect.any(String));
      const body = response.json<TokenBody>();
      expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'token_type', 'user']);
      expect(body.token_type).toBe('bearer');
      expect(Number.isInteger(body.expires_in)).toBe(true);
      expect(body.expires_in).toBeGreaterThan(0);
      expect(body.access_token.split('.')).toHaveLength(3);
      expect(body.refresh_token.length).toBeGreaterThanOrEqual(32);
      expect(body.refresh_token).not.toBe(body.access_token);
      expect(body.user).toEqual(registered.user);
      expect(response.body).not.toContain(registered.password);
    });

    it('GET /api/auth/me answers the user of the access token', async () => {
      const signedIn = await signUp(testApp.app, { displayName: 'Linus' });
      const response = await me(testApp.app, signedIn.tokens.access_token);
      expect(response.statusCode, response.body).toBe(200);
      const user = response.json<UserBody>();
      expectUserShape(user);
      expect(user).toEqual(signedIn.user);
    });

    it('GET /api/auth/me without credentials is 401 unauthorized with a Bearer challenge', async () => {
      const response = await testApp.app.inject({ method: 'GET', url: '/api/auth/me' });
      expectError(response, 401, 'unauthorized');
    });

    it('answers a wrong password and an unknown email with the same 401 invalid_credentials body', async () => {
      const registered = await register(testApp.app);
      const wrongPassword = await loginRequest(testApp.app, { email: registered.email, password: `${registered.password}-nope`, remoteAddress: randomIp() });
      const unknownEmail = await loginRequest(testApp.app, { email: uniqueEmail('nobody'), password: registered.password, remoteAddress: randomIp() });
      expectError(wrongPassword, 401, 'invalid_credentials');
      expectError(unknownEmail, 401, 'invalid_credentials');
      expect(wrongPassword.json()).toEqual(unknownEmail.json());
      expect(wrongPassword.headers['www-authenticate']).toEqual(unknownEmail.headers['www-authenticate']);
    });

    it('takes as long for an unknown email as for a wrong password (argon2 runs for both)', async () => {
      const accounts = await Promise.all([0, 1, 2, 3, 4].map(() => register(testApp.app, { remoteAddress: randomIp() })));
      const unknownTimes: number[] = [];
      const wrongTimes: number[] = [];

      async function timeLogin(email: string, password: string): Promise<number> {
        const started = performance.now();
        const response = await loginRequest(testApp.app, { email, password, remoteAddress: randomIp() });
        const elapsed = performance.now() - started;
        // A throttled answer would be fast and spoil the comparison: every try must be a real failure.
        expectError(response, 401, 'invalid_credentials');
        return elapsed;
      }

      // Warm-up, then interleaved rounds so drift in machine load hits both sides alike.
      await timeLogin(uniqueEmail('warm'), strongPassword());
      await timeLogin(accounts[0]!.email, strongPassword());
      for (let round = 0; round < 15; round += 1) {
        const account = accounts[round % accounts.length]!;
        if (round % 2 === 0) {
          unknownTimes.push(await timeLogin(uniqueEmail('ghost'), strongPassword()));
          wrongTimes.push(await timeLogin(account.email, strongPassword()));
        } else {
          wrongTimes.push(await timeLogin(account.email, strongPassword()));
          unknownTimes.push(await timeLogin(uniqueEmail('ghost'), strongPassword()));
        }
      }
      const ratio = median(unknownTimes) / median(wrongTimes);
      expect(ratio, `unknown ${median(unknownTimes).toFixed(1)} ms vs wrong ${median(wrongTimes).toFixed(1)} ms`).toBeGreaterThanOrEqual(0.5);
      expect(ratio).toBeLessThanOrEqual(2);
    });

    it('refuses unknown fields and missing fields with 400 validation_failed', async () => {
      const registered = await register(testApp.app);
      const extra = await testApp.app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { email: registered.email, password: registered.password, role: 'admin' },
      });
      expect(expectError(extra, 400, 'validation_failed').error.param).toBe('role');
      const missing = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: registered.email } });
      expect(expectError(missing, 400, 'validation_failed').error.param).toBe('password');
    });

    it('answers malformed JSON with 400 invalid_json', async () => {
      const response = await testApp.app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, payload: '{"email":' });
      expectError(response, 400, 'invalid_json');
    });
  });

  it('answers a register body over the body limit with 413 and creates nothing', async () => {
    const limited = await createTestApp({ backend, environment: { ...relaxedAuthLimits, BODY_LIMIT_BYTES: '4096' } });
    try {
      const email = uniqueEmail('big');
      const response = await limited.app.inject({
        method: 'POST',
        url: '/api/auth/register',
        payload: { email, password: `${strongPassword()}${'x'.repeat(8 * 1024)}` },
      });
      expectError(response, 413, 'payload_too_large');
      // The address is still free: the oversized request never reached the service.
      const registered = await register(limited.app, { email });
      expect(registered.user.email).toBe(email);
    } finally {
      await limited.close();
    }
  });
});
