// Credential checks that ride on the admission: once this process has judged a credential good, a
// generation request (POST /v1/chat/completions, /v1/completions, /api/chat, /api/chat/completions)
// skips the lookup and lets the admission confirm, in the same round trip, that the store still
// holds the values judged. Every change to the credential — a revoked key, a logout, a disabled
// user, new limits, a new password — must still hold on the very next generation, on this instance
// and on any other, and a request refused this way must reach nothing and consume nothing.
// Each case first makes a successful generation (so the judgment exists), then changes the
// credential, then makes the next generation.
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../src/app.js';
import type { AdmissionRequest } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { sha256Hex } from '../../src/auth/secrets.js';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { backends, hasRealServices, testRedisUrl, uniqueName, type Backend } from '../helpers/environment.js';
import { adminEnvironment, bearer, createApiKey, expectError, login, randomIp, relaxedAuthLimits, signUp, strongPassword } from '../helpers/auth-client.js';
import { conversationCount } from '../helpers/chat-fixtures.js';
import { SIM_CREATED } from '../helpers/listening-gateway.js';
import { upstreamRequestsFor } from '../helpers/relay-fixtures.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  APP_CHAT_JSON_PATH,
  APP_CHAT_PATH,
  CHAT_PATH,
  COMPLETIONS_PATH,
  adminAccessToken,
  expectNotRelayed,
  expectOk,
  expectRequestLimitHeaders,
  generate,
  eventually,
  myUsage,
  patchUser,
  setLimits,
  startLimitsGateway,
  type LimitsGateway,
} from '../helpers/limits-fixtures.js';

const USER_REQUESTS = 50;
const WINDOW_SECONDS = 3600;
const environment = { RATE_LIMIT_REQUESTS: String(USER_REQUESTS), RATE_LIMIT_WINDOW: String(WINDOW_SECONDS) };

interface Caller {
  userId: string;
  email: string;
  password: string;
  accessToken: string;
  apiKey: string;
  apiKeyId: string;
}

/** A fresh user (signed up from an address of its own), logged in, with one API key. */
async function newCaller(app: App): Promise<Caller> {
  const signedIn = await signUp(app, { remoteAddress: randomIp() });
  const key = await createApiKey(app, signedIn.tokens.access_token, 'access at admission');
  return { userId: signedIn.user.id, email: signedIn.email, password: signedIn.password, accessToken: signedIn.tokens.access_token, apiKey: key.key, apiKeyId: key.id };
}

/** A second access token of the same user: another session, still valid when the first is logged out. */
async function secondSession(app: App, caller: Caller): Promise<string> {
  return (await login(app, { email: caller.email, password: caller.password, remoteAddress: randomIp() })).access_token;
}

async function revokeKey(app: App, caller: Caller): Promise<void> {
  const response = await app.inject({ method: 'DELETE', url: `/api/keys/${caller.apiKeyId}`, headers: bearer(caller.accessToken) });
  expect(response.statusCode, response.body).toBe(204);
}

async function logout(app: App, accessToken: string): Promise<void> {
  const response = await app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(accessToken) });
  expect(response.statusCode, response.body).toBe(204);
}

async function logoutAll(app: App, accessToken: string): Promise<void> {
  const response = await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(accessToken) });
  expect(response.statusCode, response.body).toBe(204);
}

async function changePassword(app: App, caller: Caller): Promise<void> {
  const response = await app.inject({
    method: 'POST',
    url: '/api/auth/password',
    headers: bearer(caller.accessToken),
    payload: { current_password: caller.password, new_password: strongPassword() },
  });
  expect(response.statusCode, response.body).toBe(204);
}

async function disableUser(app: App, adminToken: string, userId: string): Promise<void> {
  const response = await patchUser(app, adminToken, userId, { status: 'disabled' });
  expect(response.statusCode, response.body).toBe(200);
}

/** Exactly one generation request with this id reached vLLM. */
function expectRelayedOnce(simulator: Simulator, requestId: string): void {
  expect(upstreamRequestsFor(simulator, requestId), `upstream requests for ${requestId}`).toHaveLength(1);
}

/** A successful generation that reached vLLM: the gateway has judged the credential good. */
async function judgedGeneration(gateway: LimitsGateway, options: { credential: string; path?: string; remoteAddress?: string }): Promise<LightMyRequestResponse> {
  const response = await generate(gateway.app, { remoteAddress: randomIp(), ...options });
  expectOk(response);
  expectRelayedOnce(gateway.simulator, response.requestId);
  return response;
}

/** A generation refused with 401 `code` that never reached vLLM. */
async function expectRefusedGeneration(gateway: LimitsGateway, options: { credential: string; path?: string; remoteAddress?: string }, code: 'invalid_api_key' | 'invalid_token'): Promise<void> {
  const response = await generate(gateway.app, { remoteAddress: randomIp(), ...options });
  expectError(response, 401, code);
  expect(String(response.headers['www-authenticate'])).toContain('error="invalid_token"');
  expectNotRelayed(gateway.simulator, response.requestId);
}

describe.each(backends)('credential checks at admission (%s)', (backend) => {
  let gateway: LimitsGateway;
  let adminToken: string;

  beforeAll(async () => {
    gateway = await startLimitsGateway({ backend, environment });
    adminToken = await adminAccessToken(gateway.app);
  });

  afterAll(async () => {
    await gateway.close();
  });

  it.each([CHAT_PATH, COMPLETIONS_PATH])('refuses an API key revoked since its last generation with 401 invalid_api_key on %s, and nothing reaches vLLM', async (path) => {
    const caller = await newCaller(gateway.app);
    await judgedGeneration(gateway, { credential: caller.apiKey, path });
    await revokeKey(gateway.app, caller);
    await expectRefusedGeneration(gateway, { credential: caller.apiKey, path }, 'invalid_api_key');
    // And it stays refused.
    await expectRefusedGeneration(gateway, { credential: caller.apiKey, path }, 'invalid_api_key');
  });

  it.each([CHAT_PATH, APP_CHAT_PATH, APP_CHAT_JSON_PATH])('refuses an access token after logout with 401 invalid_token on %s, and nothing reaches vLLM or is stored', async (path) => {
    const caller = await newCaller(gateway.app);
    await judgedGeneration(gateway, { credential: caller.accessToken, path });
    const storedBefore = await conversationCount(gateway.app, caller.userId);
    await logout(gateway.app, caller.accessToken);
    await expectRefusedGeneration(gateway, { credential: caller.accessToken, path }, 'invalid_token');
    expect(await conversationCount(gateway.app, caller.userId)).toEqual(storedBefore);
  });

  it.each([
    { change: 'logout-all', apply: (app: App, caller: Caller) => logoutAll(app, caller.accessToken) },
    { change: 'a password change', apply: (app: App, caller: Caller) => changePassword(app, caller) },
  ])('refuses an access token after $change', async ({ apply }) => {
    const caller = await newCaller(gateway.app);
    await judgedGeneration(gateway, { credential: caller.accessToken });
    await apply(gateway.app, caller);
    await expectRefusedGeneration(gateway, { credential: caller.accessToken }, 'invalid_token');
  });

  it('refuses the API key and the access token of a user an administrator disabled', async () => {
    const caller = await newCaller(gateway.app);
    await judgedGeneration(gateway, { credential: caller.apiKey });
    await judgedGeneration(gateway, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH });
    await disableUser(gateway.app, adminToken, caller.userId);
    await expectRefusedGeneration(gateway, { credential: caller.apiKey }, 'invalid_api_key');
    await expectRefusedGeneration(gateway, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH }, 'invalid_token');
  });

  it.each(['apiKey', 'accessToken'] as const)('applies an administrator’s new request limit to the next generation (%s)', async (credentialKind) => {
    const caller = await newCaller(gateway.app);
    const ip = randomIp();
    const before = await judgedGeneration(gateway, { credential: caller[credentialKind], remoteAddress: ip });
    expectRequestLimitHeaders(before.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 1 });

    await setLimits(gateway.app, adminToken, caller.userId, { rate_limit_requests: 7 });
    const after = await generate(gateway.app, { credential: caller[credentialKind], remoteAddress: ip });
    expectOk(after);
    // One used before, this one now: five of seven left.
    expectRequestLimitHeaders(after.headers, { limit: 7, remaining: 5 });
  });

  it('keeps a credential whose state changed but is still good: judged again, admitted, and counted once', async () => {
    const caller = await newCaller(gateway.app);
    const ip = randomIp();
    const before = await judgedGeneration(gateway, { credential: caller.apiKey, remoteAddress: ip });
    expectRequestLimitHeaders(before.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 1 });
    // A new password ends the sessions and drops the user's cached state; API keys stay good.
    await changePassword(gateway.app, caller);
    const after = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip });
    expectOk(after);
    expectRelayedOnce(gateway.simulator, after.requestId);
    expectRequestLimitHeaders(after.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 2 });
  });

  it.each([
    {
      change: 'its API key revoked',
      prepare: (_app: App, caller: Caller) => Promise.resolve({ refused: caller.apiKey, stillValid: caller.accessToken }),
      apply: (app: App, caller: Caller) => revokeKey(app, caller),
      code: 'invalid_api_key' as const,
    },
    {
      change: 'its session logged out',
      prepare: async (app: App, caller: Caller) => ({ refused: caller.accessToken, stillValid: await secondSession(app, caller) }),
      apply: (app: App, caller: Caller) => logout(app, caller.accessToken),
      code: 'invalid_token' as const,
    },
  ])('a generation refused because of $change consumes nothing of the user’s request rate', async ({ prepare, apply, code }) => {
    const caller = await newCaller(gateway.app);
    const credentials = await prepare(gateway.app, caller);
    const ip = randomIp();
    const first = await judgedGeneration(gateway, { credential: credentials.refused, remoteAddress: ip });
    expectRequestLimitHeaders(first.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 1 });

    await apply(gateway.app, caller);
    await expectRefusedGeneration(gateway, { credential: credentials.refused, remoteAddress: ip }, code);

    // Only the first generation was counted: the standing, then the next allowed request, say so.
    expect((await myUsage(gateway.app, credentials.stillValid)).requests).toMatchObject({ limit: USER_REQUESTS, remaining: USER_REQUESTS - 1 });
    const next = await judgedGeneration(gateway, { credential: credentials.stillValid, remoteAddress: ip });
    expectRequestLimitHeaders(next.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 2 });
  });

  it('keeps an unchanged credential working: five generations in a row, on every route, each counted once', async () => {
    const caller = await newCaller(gateway.app);
    const ip = randomIp();
    const sequence = [
      { credential: caller.apiKey, path: CHAT_PATH },
      { credential: caller.apiKey, path: COMPLETIONS_PATH },
      { credential: caller.accessToken, path: APP_CHAT_PATH },
      { credential: caller.accessToken, path: APP_CHAT_JSON_PATH },
      { credential: caller.apiKey, path: CHAT_PATH },
      { credential: caller.accessToken, path: CHAT_PATH },
    ];
    for (const [index, request] of sequence.entries()) {
      const response = await judgedGeneration(gateway, { ...request, remoteAddress: ip });
      // With Redis, a credential coming back has its next request charged in advance (a prepaid
      // admission): the count it reports is the one from when it was charged, and it includes a
      // request charged in advance for the other credential — so it is exact on the in-process store only.
      expectRequestLimitHeaders(response.headers, { limit: USER_REQUESTS, ...(backend === 'embedded' ? { remaining: USER_REQUESTS - 1 - index } : {}) });
    }
    // A change of the user (logout-all) gives back its prepaid admissions: then the six generations count once each.
    await logoutAll(gateway.app, caller.accessToken);
    await eventually(async () => expect((await myUsage(gateway.app, caller.apiKey)).requests.remaining).toBe(USER_REQUESTS - sequence.length));
  });
});

describe.skipIf(!hasRealServices)('credential checks at admission across two instances sharing Redis', () => {
  let first: LimitsGateway;
  let second: LimitsGateway;
  let adminToken: string;

  beforeAll(async () => {
    first = await startLimitsGateway({ backend: 'real', environment });
    second = await startLimitsGateway({ backend: 'real', environment, simulator: first.simulator, sharing: first.testApp });
    adminToken = await adminAccessToken(first.app);
  });

  afterAll(async () => {
    await second.close();
    await first.close();
  });

  it('an API key revoked through the first instance is refused by the second, which had judged it', async () => {
    const caller = await newCaller(first.app);
    await judgedGeneration(second, { credential: caller.apiKey });
    await judgedGeneration(second, { credential: caller.apiKey });
    await revokeKey(first.app, caller);
    await expectRefusedGeneration(second, { credential: caller.apiKey }, 'invalid_api_key');
  });

  it.each([CHAT_PATH, APP_CHAT_PATH])('a logout through the first instance is refused by the second on %s', async (path) => {
    const caller = await newCaller(first.app);
    await judgedGeneration(second, { credential: caller.accessToken, path });
    await judgedGeneration(second, { credential: caller.accessToken, path });
    await logout(first.app, caller.accessToken);
    await expectRefusedGeneration(second, { credential: caller.accessToken, path }, 'invalid_token');
  });

  it('a user disabled through the first instance is refused by the second', async () => {
    const caller = await newCaller(first.app);
    await judgedGeneration(second, { credential: caller.apiKey });
    await judgedGeneration(second, { credential: caller.accessToken });
    await disableUser(first.app, adminToken, caller.userId);
    await expectRefusedGeneration(second, { credential: caller.apiKey }, 'invalid_api_key');
    await expectRefusedGeneration(second, { credential: caller.accessToken }, 'invalid_token');
  });

  it('a limit set through the first instance applies to the next generation on the second (access token)', async () => {
    const caller = await newCaller(first.app);
    const ip = randomIp();
    await judgedGeneration(second, { credential: caller.accessToken, remoteAddress: ip });
    await setLimits(first.app, adminToken, caller.userId, { rate_limit_requests: 9 });
    const after = await generate(second.app, { credential: caller.accessToken, remoteAddress: ip });
    expectOk(after);
    expectRequestLimitHeaders(after.headers, { limit: 9, remaining: 7 });
  });
});

/**
 * Proof that the lookup is really skipped: the app gets a store of the test's own (an ordinary
 * dependency of buildApp), whose reads and admissions are watched by pass-through spies.
 */
describe.each(backends)('the judged credential skips the lookup (%s)', (backend) => {
  let simulator: Simulator;
  let store: KeyValueStore;
  let testApp: TestApp;

  async function openWatchedStore(kind: Backend, keyPrefix: string): Promise<KeyValueStore> {
    if (kind === 'embedded') return createMemoryStore();
    return createRedisStore({ url: testRedisUrl!, keyPrefix });
  }

  beforeAll(async () => {
    const keyPrefix = `${uniqueName('access-admission')}:`;
    simulator = await startSimulator({ created: SIM_CREATED });
    store = await openWatchedStore(backend, keyPrefix);
    testApp = await createTestApp({
      backend,
      environment: { ...relaxedAuthLimits, ...adminEnvironment, ...environment, VLLM_BASE_URL: simulator.url, ...(backend === 'real' ? { REDIS_KEY_PREFIX: keyPrefix } : {}) },
      dependencies: { store },
    });
  });

  afterAll(async () => {
    await testApp.close();
    await store.close();
    await simulator.close();
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Watches every store read (get and getMany) and every admission from now on. */
  function watchStore() {
    return { get: vi.spyOn(store, 'get'), getMany: vi.spyOn(store, 'getMany'), admit: vi.spyOn(store, 'admit') };
  }

  type StoreWatch = ReturnType<typeof watchStore>;

  function readCount(watch: StoreWatch): number {
    return watch.get.mock.calls.length + watch.getMany.mock.calls.length;
  }

  function admissionsMade(watch: StoreWatch): AdmissionRequest[] {
    return watch.admit.mock.calls.map(([request]) => request);
  }

  /** What each admission answered, in order. */
  async function admissionOutcomes(watch: StoreWatch): Promise<Array<string>> {
    const results = await Promise.all(watch.admit.mock.results.map((result) => (result.type === 'return' ? result.value : Promise.reject(new Error('admit threw')))));
    return results.map((result) => (result.allowed ? 'allowed' : (result.failure?.kind ?? 'refused')));
  }

  async function generateOk(credential: string, path = CHAT_PATH): Promise<void> {
    const response = await generate(testApp.app, { credential, path, remoteAddress: randomIp() });
    expectOk(response);
  }

  it('judges an API key once, then admits five generations without reading the store, each admission carrying the judged values', async () => {
    const caller = await newCaller(testApp.app);
    const judging = watchStore();
    await generateOk(caller.apiKey);
    // The first generation checks the key in full.
    expect(readCount(judging)).toBeGreaterThan(0);
    expect(admissionsMade(judging).map((request) => request.precondition ?? null)).toEqual([null]);
    vi.restoreAllMocks();

    const watch = watchStore();
    for (let index = 0; index < 5; index += 1) await generateOk(caller.apiKey, index % 2 === 0 ? CHAT_PATH : COMPLETIONS_PATH);
    expect(readCount(watch)).toBe(0);
    const admissions = admissionsMade(watch);
    expect(admissions).toHaveLength(5);
    for (const admission of admissions) {
      expect(admission.precondition?.keys).toEqual([`auth:key:${sha256Hex(caller.apiKey)}`, `auth:user:v2:${caller.userId}`]);
      expect(admission.precondition?.values).toHaveLength(2);
      expect(admission.precondition?.values.every((value) => typeof value === 'string' && value.length > 0)).toBe(true);
    }
    expect(await admissionOutcomes(watch)).toEqual(['allowed', 'allowed', 'allowed', 'allowed', 'allowed']);

    // Any other route still checks the key in full.
    const usage = await testApp.app.inject({ method: 'GET', url: '/api/me/usage', headers: bearer(caller.apiKey) });
    expect(usage.statusCode, usage.body).toBe(200);
    expect(readCount(watch)).toBeGreaterThan(0);
  });

  it('judges an access token once, then admits /api/chat and /v1 generations without reading the store', async () => {
    const caller = await newCaller(testApp.app);
    await generateOk(caller.accessToken, APP_CHAT_JSON_PATH);

    const watch = watchStore();
    for (const path of [APP_CHAT_JSON_PATH, APP_CHAT_PATH, CHAT_PATH]) await generateOk(caller.accessToken, path);
    expect(readCount(watch)).toBe(0);
    const admissions = admissionsMade(watch);
    expect(admissions).toHaveLength(3);
    for (const admission of admissions) {
      const [deniedKey, userKey, sessionKey] = admission.precondition?.keys ?? [];
      expect(deniedKey).toMatch(/^auth:denied:/);
      expect(userKey).toBe(`auth:user:v2:${caller.userId}`);
      expect(sessionKey).toMatch(/^auth:session:/);
      // The token must not be denied; the session must still be active.
      expect(admission.precondition?.values[0]).toBeNull();
      expect(admission.precondition?.values[2]).toBe('active');
    }
  });

  it('catches a revoked key in the admission: the precondition fails, the full check refuses, and no second admission is made', async () => {
    const caller = await newCaller(testApp.app);
    await generateOk(caller.apiKey);
    await revokeKey(testApp.app, caller);

    const watch = watchStore();
    const refused = await generate(testApp.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expectError(refused, 401, 'invalid_api_key');
    expect(upstreamRequestsFor(simulator, refused.requestId)).toHaveLength(0);
    expect(admissionsMade(watch)).toHaveLength(1);
    expect(admissionsMade(watch)[0]?.precondition).not.toBeNull();
    expect(await admissionOutcomes(watch)).toEqual(['precondition']);
    // The full check ran after the failed precondition.
    expect(readCount(watch)).toBeGreaterThan(0);
  });

  it('re-judges a credential whose state changed but is still good: one failed precondition, then one plain admission', async () => {
    const caller = await newCaller(testApp.app);
    await generateOk(caller.apiKey);
    const adminToken = await adminAccessToken(testApp.app);
    await setLimits(testApp.app, adminToken, caller.userId, { rate_limit_requests: 11 });

    const watch = watchStore();
    const requestId = `access-admission-${randomUUID()}`;
    const response = await generate(testApp.app, { credential: caller.apiKey, remoteAddress: randomIp(), requestId });
    expectOk(response);
    expectRequestLimitHeaders(response.headers, { limit: 11, remaining: 9 });
    expect(upstreamRequestsFor(simulator, requestId)).toHaveLength(1);
    expect(await admissionOutcomes(watch)).toEqual(['precondition', 'allowed']);
    expect(admissionsMade(watch).map((request) => request.precondition === null || request.precondition === undefined)).toEqual([false, true]);
    vi.restoreAllMocks();

    // Judged anew: the next one takes the fast path again.
    const next = watchStore();
    await generateOk(caller.apiKey);
    expect(readCount(next)).toBe(0);
    expect(await admissionOutcomes(next)).toEqual(['allowed']);
  });
});
