// API keys over HTTP: created and shown once, listed without the secret, usable anywhere a bearer
// token is, revoked for good, and invisible to every other user.
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  bearer,
  createApiKey,
  expectError,
  isoTimestampPattern,
  me,
  relaxedAuthLimits,
  signUp,
  uuidPattern,
  type UserBody,
} from '../helpers/auth-client.js';

interface CreatedKeyBody {
  id: string;
  name: string;
  prefix: string;
  key: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
}

type ListedKeyBody = Omit<CreatedKeyBody, 'key'>;

const dayMs = 86_400_000;

describe.each(backends)('API keys (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: relaxedAuthLimits });
  });

  afterAll(async () => {
    await testApp.close();
  });

  async function listKeys(accessToken: string): Promise<{ data: ListedKeyBody[]; next_cursor: string | null; raw: string }> {
    const response = await testApp.app.inject({ method: 'GET', url: '/api/keys', headers: bearer(accessToken) });
    expect(response.statusCode, response.body).toBe(200);
    return { ...response.json<{ data: ListedKeyBody[]; next_cursor: string | null }>(), raw: response.body };
  }

  it('creates a key and shows the secret once, in the documented shape', async () => {
    const signedIn = await signUp(testApp.app);
    const response = await testApp.app.inject({ method: 'POST', url: '/api/keys', headers: bearer(signedIn.tokens.access_token), payload: { name: 'laptop script' } });
    expect(response.statusCode, response.body).toBe(201);
    const created = response.json<CreatedKeyBody>();
    expect(Object.keys(created).sort()).toEqual(['created_at', 'expires_at', 'id', 'key', 'last_used_at', 'name', 'prefix']);
    expect(created.id).toMatch(uuidPattern);
    expect(created.name).toBe('laptop script');
    expect(created.key.startsWith('vcg_')).toBe(true);
    expect(created.key.startsWith(created.prefix)).toBe(true);
    expect(created.prefix.length).toBeGreaterThan('vcg_'.length);
    // The prefix identifies the key; it must not be most of the secret.
    expect(created.key.length - created.prefix.length).toBeGreaterThanOrEqual(24);
    expect(created.created_at).toMatch(isoTimestampPattern);
    expect(created.last_used_at).toBeNull();
    expect(created.expires_at).toBeNull();
  });

  it('sets expires_at from expires_in_days', async () => {
    const signedIn = await signUp(testApp.app);
    const before = Date.now();
    const response = await testApp.app.inject({
      method: 'POST',
      url: '/api/keys',
      headers: bearer(signedIn.tokens.access_token),
      payload: { name: 'month', expires_in_days: 30 },
    });
    expect(response.statusCode, response.body).toBe(201);
    const created = response.json<CreatedKeyBody>();
    expect(created.expires_at).toMatch(isoTimestampPattern);
    const expiresAt = Date.parse(created.expires_at!);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 30 * dayMs - 60_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 30 * dayMs + 60_000);
    // An unexpired key works.
    expect((await me(testApp.app, created.key)).statusCode).toBe(200);
  });

  it('gives every key a different secret', async () => {
    const signedIn = await signUp(testApp.app);
    const first = await createApiKey(testApp.app, signedIn.tokens.access_token, 'one');
    const second = await createApiKey(testApp.app, signedIn.tokens.access_token, 'one');
    expect(first.key).not.toBe(second.key);
    expect(first.id).not.toBe(second.id);
  });

  it('lists the caller’s keys without the secret', async () => {
    const signedIn = await signUp(testApp.app);
    const stranger = await signUp(testApp.app);
    const first = await createApiKey(testApp.app, signedIn.tokens.access_token, 'first');
    const second = await createApiKey(testApp.app, signedIn.tokens.access_token, 'second');
    const strangers = await createApiKey(testApp.app, stranger.tokens.access_token, 'stranger');

    const list = await listKeys(signedIn.tokens.access_token);
    expect(list.next_cursor).toBeNull();
    expect(list.data.map((key) => key.id).sort()).toEqual([first.id, second.id].sort());
    for (const key of list.data) {
      expect(Object.keys(key).sort()).toEqual(['created_at', 'expires_at', 'id', 'last_used_at', 'name', 'prefix']);
    }
    expect(list.data.find((key) => key.id === first.id)).toMatchObject({ name: 'first', prefix: first.prefix });
    for (const secret of [first.key, second.key]) {
      // Neither the whole secret nor its part after the prefix appears anywhere in the answer.
      expect(list.raw).not.toContain(secret);
      expect(list.raw).not.toContain(secret.slice(secret.length - 16));
    }
    expect(list.raw).not.toContain(strangers.id);
  });

  it('authenticates as its owner anywhere a bearer token does', async () => {
    const signedIn = await signUp(testApp.app);
    const created = await createApiKey(testApp.app, signedIn.tokens.access_token);
    const response = await me(testApp.app, created.key);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<UserBody>()).toEqual(signedIn.user);
  });

  it('refuses an unknown or damaged key with 401 invalid_api_key', async () => {
    const signedIn = await signUp(testApp.app);
    const created = await createApiKey(testApp.app, signedIn.tokens.access_token);
    const damaged = `${created.key.slice(0, -1)}${created.key.endsWith('a') ? 'b' : 'a'}`;
    expectError(await me(testApp.app, damaged), 401, 'invalid_api_key');
    expectError(await me(testApp.app, `vcg_${randomBytes(24).toString('base64url')}`), 401, 'invalid_api_key');
    expectError(await me(testApp.app, created.prefix), 401, 'invalid_api_key');
    expect((await me(testApp.app, created.key)).statusCode).toBe(200);
  });

  it('DELETE revokes the key: it answers 401 invalid_api_key from then on', async () => {
    const signedIn = await signUp(testApp.app);
    const created = await createApiKey(testApp.app, signedIn.tokens.access_token);
    const kept = await createApiKey(testApp.app, signedIn.tokens.access_token, 'kept');
    expect((await me(testApp.app, created.key)).statusCode).toBe(200);

    const response = await testApp.app.inject({ method: 'DELETE', url: `/api/keys/${created.id}`, headers: bearer(signedIn.tokens.access_token) });
    expect(response.statusCode, response.body).toBe(204);
    expect(response.body).toBe('');
    expectError(await me(testApp.app, created.key), 401, 'invalid_api_key');
    expect((await me(testApp.app, kept.key)).statusCode).toBe(200);
    expect((await me(testApp.app, signedIn.tokens.access_token)).statusCode).toBe(200);
  });

  it('answers 404 for another user’s key, a random uuid and a non-uuid, and revokes nothing', async () => {
    const signedIn = await signUp(testApp.app);
    const victim = await signUp(testApp.app);
    const victimsKey = await createApiKey(testApp.app, victim.tokens.access_token);
    for (const id of [victimsKey.id, randomUUID(), 'not-a-uuid']) {
      const response = await testApp.app.inject({ method: 'DELETE', url: `/api/keys/${id}`, headers: bearer(signedIn.tokens.access_token) });
      expectError(response, 404, 'not_found');
    }
    expect((await me(testApp.app, victimsKey.key)).statusCode).toBe(200);
    const victimsList = await listKeys(victim.tokens.access_token);
    expect(victimsList.data.map((key) => key.id)).toEqual([victimsKey.id]);
  });

  it('refuses bad bodies with 400 validation_failed', async () => {
    const signedIn = await signUp(testApp.app);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, 'name'],
      [{ name: '' }, 'name'],
      [{ name: 'x', expires_in_days: 0 }, 'expires_in_days'],
      [{ name: 'x', expires_in_days: 1.5 }, 'expires_in_days'],
      [{ name: 'x', user_id: randomUUID() }, 'user_id'],
    ];
    for (const [payload, param] of cases) {
      const response = await testApp.app.inject({ method: 'POST', url: '/api/keys', headers: bearer(signedIn.tokens.access_token), payload });
      expect(expectError(response, 400, 'validation_failed').error.param).toBe(param);
    }
    expect((await listKeys(signedIn.tokens.access_token)).data).toEqual([]);
  });

  it('needs credentials for every key route', async () => {
    expectError(await testApp.app.inject({ method: 'POST', url: '/api/keys', payload: { name: 'x' } }), 401, 'unauthorized');
    expectError(await testApp.app.inject({ method: 'GET', url: '/api/keys' }), 401, 'unauthorized');
    expectError(await testApp.app.inject({ method: 'DELETE', url: `/api/keys/${randomUUID()}` }), 401, 'unauthorized');
  });
});
