// The admission's precondition: plain store keys that must still hold exactly the values the caller
// judged (null: the key must be absent). When any differs, the admission checks and consumes
// nothing — no request rate, no token reservation, no concurrency lease — and answers with the
// `precondition` failure; when all hold, or there is none, it is the ordinary admission. Run on the
// in-memory store and on Redis (the Lua script), then both side by side on the same steps.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preconditionFailed } from '../../src/platform/admission.js';
import type { AdmissionRequest, AdmissionResult, ConcurrencyCheck, QuotaCheck, RateCheck, StoredValuesPrecondition } from '../../src/platform/admission.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { testRedisUrl, uniqueName } from '../helpers/environment.js';
import { deleteKeys } from '../helpers/test-app.js';
import { minuteMs, minuteStart, openStore, storeForSuite, storeKinds } from '../helpers/store-fixtures.js';

/** One generation's checks, as the limits service builds them: a request rate, a token quota and a concurrency lease. */
interface GenerationChecks {
  rate: RateCheck;
  quota: QuotaCheck;
  leaseKey: string;
}

function generationChecks(label: string, options: { requests?: number; reserve?: number } = {}): GenerationChecks {
  return {
    rate: { key: `${label}:rate`, limit: options.requests ?? 10, windowMs: minuteMs },
    quota: { key: `${label}:quota`, limit: 1000, windowMs: minuteMs, reserve: options.reserve ?? 40 },
    leaseKey: `${label}:leases`,
  };
}

function lease(leaseKey: string, limit: number): ConcurrencyCheck {
  return { key: leaseKey, limit, leaseId: randomUUID(), leaseTtlMs: 60_000 };
}

function admissionRequest(now: number, checks: GenerationChecks, precondition?: StoredValuesPrecondition | null): AdmissionRequest {
  const request: AdmissionRequest = { now, rates: [checks.rate], quotas: [checks.quota], concurrency: lease(checks.leaseKey, 1) };
  if (precondition !== undefined) request.precondition = precondition;
  return request;
}

/** Where the rate and the quota stand, read without consuming anything. */
async function standing(store: KeyValueStore, now: number, checks: GenerationChecks): Promise<{ rateRemaining: number | undefined; quotaUsed: number | undefined }> {
  const peeked = await store.peek({ now, rates: [checks.rate], quotas: [{ key: checks.quota.key, limit: checks.quota.limit, windowMs: checks.quota.windowMs }] });
  return { rateRemaining: peeked.rates[0]?.remaining, quotaUsed: peeked.quotas[0]?.used };
}

/**
 * Whether a lease is held on `leaseKey` (cap of one): a probe admission without precondition is
 * refused for concurrency if so; when it gets in, its own lease is released again at once.
 */
async function leaseHeld(store: KeyValueStore, now: number, leaseKey: string): Promise<boolean> {
  const probe = lease(leaseKey, 1);
  const result = await store.admit({ now, rates: [], quotas: [], concurrency: probe });
  if (result.allowed) {
    await store.settle({ quotas: [], release: { key: leaseKey, leaseId: probe.leaseId } });
    return false;
  }
  expect(result.failure?.kind).toBe('concurrency');
  return true;
}

describe.each(storeKinds)('admission preconditions on the %s store', (kind) => {
  let store: KeyValueStore;
  storeForSuite(kind, 'precondition', (opened) => (store = opened));

  const label = (name: string) => `${name}:${randomUUID()}`;

  /** Two credential keys as an API key's judgment holds them: the key's state and its owner's. */
  async function storedCredential(): Promise<{ keyStateKey: string; userStateKey: string; keyState: string; userState: string }> {
    const keyStateKey = `auth:key:${randomUUID()}`;
    const userStateKey = `auth:user:v2:${randomUUID()}`;
    const keyState = JSON.stringify({ id: randomUUID(), userId: randomUUID(), expiresAt: null, revoked: false });
    const userState = JSON.stringify({ version: 0, status: 'active', role: 'user', limits: { rate_limit_requests: null } });
    await store.set(keyStateKey, keyState, { ttlMs: 60_000 });
    await store.set(userStateKey, userState, { ttlMs: 60_000 });
    return { keyStateKey, userStateKey, keyState, userState };
  }

  it('admits when every key holds its expected value, and consumes the rate, the quota and a lease', async () => {
    const credential = await storedCredential();
    const checks = generationChecks(label('matching'));
    const now = minuteStart(1000);
    const result = await store.admit(
      admissionRequest(now, checks, { keys: [credential.keyStateKey, credential.userStateKey], values: [credential.keyState, credential.userState] }),
    );
    expect(result.allowed).toBe(true);
    expect(result.failure).toBeNull();
    expect(result.rates[0]?.remaining).toBe(9);
    expect(result.quotas[0]?.used).toBe(40);
    expect(await standing(store, now, checks)).toEqual({ rateRemaining: 9, quotaUsed: 40 });
    expect(await leaseHeld(store, now, checks.leaseKey)).toBe(true);
  });

  it('refuses when a value differs, with the precondition failure, and consumes nothing', async () => {
    const credential = await storedCredential();
    const checks = generationChecks(label('differs'));
    const now = minuteStart(2000);
    // The owner's state was rewritten since it was judged (a new role, new limits).
    const changedUserState = JSON.stringify({ version: 0, status: 'active', role: 'admin', limits: { rate_limit_requests: null } });
    await store.set(credential.userStateKey, changedUserState, { ttlMs: 60_000 });

    const result = await store.admit(
      admissionRequest(now, checks, { keys: [credential.keyStateKey, credential.userStateKey], values: [credential.keyState, credential.userState] }),
    );
    expect(result).toEqual(preconditionFailed);
    expect(result.failure).toEqual({ kind: 'precondition', index: 0, retryAfterMs: 0 });
    // Nothing was taken: the whole rate budget, no tokens reserved, no lease held.
    expect(await standing(store, now, checks)).toEqual({ rateRemaining: 10, quotaUsed: 0 });
    expect(await leaseHeld(store, now, checks.leaseKey)).toBe(false);

    // The same admission with the values as they are now goes through.
    const admitted = await store.admit(
      admissionRequest(now, checks, { keys: [credential.keyStateKey, credential.userStateKey], values: [credential.keyState, changedUserState] }),
    );
    expect(admitted.allowed).toBe(true);
    expect(admitted.rates[0]?.remaining).toBe(9);
  });

  it('refuses when a key expected absent exists (a denied token), and consumes nothing', async () => {
    const credential = await storedCredential();
    const deniedKey = `auth:denied:${randomUUID()}`;
    const checks = generationChecks(label('denied'));
    const now = minuteStart(3000);
    const precondition = { keys: [deniedKey, credential.userStateKey], values: [null, credential.userState] };

    // Absent as expected: admitted (without a lease, so the one below would be the refused admission's).
    const admitted = await store.admit({ ...admissionRequest(now, checks, precondition), concurrency: null });
    expect(admitted.allowed).toBe(true);

    await store.set(deniedKey, '1', { ttlMs: 60_000 });
    const before = await standing(store, now, checks);
    expect(before).toEqual({ rateRemaining: 9, quotaUsed: 40 });
    const refused = await store.admit(admissionRequest(now, checks, precondition));
    expect(refused).toEqual(preconditionFailed);
    expect(await standing(store, now, checks)).toEqual(before);
    expect(await leaseHeld(store, now, checks.leaseKey)).toBe(false);
  });

  it('refuses when a key expected present is missing (a revoked key’s state dropped), and consumes nothing', async () => {
    const credential = await storedCredential();
    const checks = generationChecks(label('missing'));
    const now = minuteStart(4000);
    await store.delete(credential.keyStateKey);

    const refused = await store.admit(
      admissionRequest(now, checks, { keys: [credential.keyStateKey, credential.userStateKey], values: [credential.keyState, credential.userState] }),
    );
    expect(refused).toEqual(preconditionFailed);
    expect(await standing(store, now, checks)).toEqual({ rateRemaining: 10, quotaUsed: 0 });
    expect(await leaseHeld(store, now, checks.leaseKey)).toBe(false);
  });

  it('checks every key: only the last of three differing is enough to refuse', async () => {
    const deniedKey = `auth:denied:${randomUUID()}`;
    const userStateKey = `auth:user:v2:${randomUUID()}`;
    const sessionKey = `auth:session:${randomUUID()}`;
    await store.set(userStateKey, '{"version":3}', { ttlMs: 60_000 });
    await store.set(sessionKey, 'revoked', { ttlMs: 60_000 });
    const checks = generationChecks(label('three'));
    const now = minuteStart(5000);

    const refused = await store.admit(admissionRequest(now, checks, { keys: [deniedKey, userStateKey, sessionKey], values: [null, '{"version":3}', 'active'] }));
    expect(refused).toEqual(preconditionFailed);
    expect(await standing(store, now, checks)).toEqual({ rateRemaining: 10, quotaUsed: 0 });

    const admitted = await store.admit(admissionRequest(now, checks, { keys: [deniedKey, userStateKey, sessionKey], values: [null, '{"version":3}', 'revoked'] }));
    expect(admitted.allowed).toBe(true);
  });

  it('compares values exactly: an empty string is not absent, and a literal "-" is a value', async () => {
    const emptyKey = `auth:empty:${randomUUID()}`;
    const dashKey = `auth:dash:${randomUUID()}`;
    await store.set(emptyKey, '', { ttlMs: 60_000 });
    await store.set(dashKey, '-', { ttlMs: 60_000 });
    const now = minuteStart(6000);

    expect(await store.admit(admissionRequest(now, generationChecks(label('empty-absent')), { keys: [emptyKey], values: [null] }))).toEqual(preconditionFailed);
    expect((await store.admit(admissionRequest(now, generationChecks(label('empty-present')), { keys: [emptyKey], values: [''] }))).allowed).toBe(true);
    expect(await store.admit(admissionRequest(now, generationChecks(label('dash-absent')), { keys: [dashKey], values: [null] }))).toEqual(preconditionFailed);
    expect((await store.admit(admissionRequest(now, generationChecks(label('dash-present')), { keys: [dashKey], values: ['-'] }))).allowed).toBe(true);
    // A value that only starts like the stored one is another value.
    expect(await store.admit(admissionRequest(now, generationChecks(label('dash-longer')), { keys: [dashKey], values: ['--'] }))).toEqual(preconditionFailed);
  });

  it('treats an expired key as absent', async () => {
    const sessionKey = `auth:session:${randomUUID()}`;
    await store.set(sessionKey, 'active', { ttlMs: 50 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const now = minuteStart(7000);
    expect(await store.admit(admissionRequest(now, generationChecks(label('expired-present')), { keys: [sessionKey], values: ['active'] }))).toEqual(preconditionFailed);
    expect((await store.admit(admissionRequest(now, generationChecks(label('expired-absent')), { keys: [sessionKey], values: [null] }))).allowed).toBe(true);
  });

  it('answers a failed precondition before the limits: a spent rate still reports the precondition', async () => {
    const deniedKey = `auth:denied:${randomUUID()}`;
    await store.set(deniedKey, '1', { ttlMs: 60_000 });
    const checks = generationChecks(label('spent'), { requests: 1 });
    const now = minuteStart(8000);
    expect((await store.admit({ now, rates: [checks.rate], quotas: [], concurrency: null })).allowed).toBe(true);
    expect((await store.admit({ now, rates: [checks.rate], quotas: [], concurrency: null })).failure?.kind).toBe('rate');

    const refused = await store.admit({ now, rates: [checks.rate], quotas: [], concurrency: null, precondition: { keys: [deniedKey], values: [null] } });
    expect(refused).toEqual(preconditionFailed);
  });

  it('behaves as before without a precondition: absent, null or with no keys', async () => {
    const checks = generationChecks(label('none'), { requests: 3 });
    const now = minuteStart(9000);
    const withoutField = await store.admit({ now, rates: [checks.rate], quotas: [checks.quota], concurrency: null });
    const withNull = await store.admit({ now, rates: [checks.rate], quotas: [checks.quota], concurrency: null, precondition: null });
    const withNoKeys = await store.admit({ now, rates: [checks.rate], quotas: [checks.quota], concurrency: null, precondition: { keys: [], values: [] } });
    const refused = await store.admit({ now, rates: [checks.rate], quotas: [checks.quota], concurrency: null, precondition: null });

    expect([withoutField, withNull, withNoKeys].map((result) => result.allowed)).toEqual([true, true, true]);
    expect([withoutField, withNull, withNoKeys].map((result) => result.rates[0]?.remaining)).toEqual([2, 1, 0]);
    expect([withoutField, withNull, withNoKeys].map((result) => result.quotas[0]?.used)).toEqual([40, 80, 120]);
    // The ordinary refusal, not the precondition's.
    expect(refused.allowed).toBe(false);
    expect(refused.failure).toMatchObject({ kind: 'rate', index: 0 });
    expect(refused.failure?.retryAfterMs).toBeGreaterThan(0);
  });
});

describe.skipIf(testRedisUrl === null)('preconditions: the Lua script and the in-memory twin agree', () => {
  const prefix = `${uniqueName('precondition-agreement')}:`;
  let redis: KeyValueStore;
  let memory: KeyValueStore;

  beforeAll(async () => {
    redis = await openStore('redis', prefix);
    memory = await openStore('memory', prefix);
  });

  afterAll(async () => {
    await redis.close();
    await memory.close();
    await deleteKeys(prefix);
  });

  type Step =
    | { kind: 'set'; key: string; value: string }
    | { kind: 'delete'; key: string }
    | { kind: 'admit'; request: AdmissionRequest }
    | { kind: 'peek'; now: number; checks: GenerationChecks };

  /** Credential keys changing under a run of admissions whose preconditions sometimes hold and sometimes do not. */
  function steps(label: string): Step[] {
    const now = minuteStart(500);
    const deniedKey = `${label}:auth:denied`;
    const userKey = `${label}:auth:user`;
    const sessionKey = `${label}:auth:session`;
    const checks = generationChecks(label, { requests: 6, reserve: 25 });
    const judged: StoredValuesPrecondition = { keys: [deniedKey, userKey, sessionKey], values: [null, '{"version":1,"role":"user"}', 'active'] };
    const admit = (offsetMs: number, precondition: StoredValuesPrecondition | null): Step => ({
      kind: 'admit',
      request: { now: now + offsetMs, rates: [checks.rate], quotas: [checks.quota], concurrency: null, precondition },
    });
    return [
      admit(0, judged),
      { kind: 'set', key: userKey, value: '{"version":1,"role":"user"}' },
      { kind: 'set', key: sessionKey, value: 'active' },
      admit(10, judged),
      admit(20, judged),
      { kind: 'peek', now: now + 20, checks },
      { kind: 'set', key: userKey, value: '{"version":2,"role":"user"}' },
      admit(30, judged),
      { kind: 'peek', now: now + 30, checks },
      admit(40, { keys: judged.keys, values: [null, '{"version":2,"role":"user"}', 'active'] }),
      { kind: 'set', key: deniedKey, value: '1' },
      admit(50, { keys: judged.keys, values: [null, '{"version":2,"role":"user"}', 'active'] }),
      { kind: 'delete', key: deniedKey },
      { kind: 'delete', key: sessionKey },
      admit(60, { keys: judged.keys, values: [null, '{"version":2,"role":"user"}', 'active'] }),
      admit(70, { keys: judged.keys, values: [null, '{"version":2,"role":"user"}', null] }),
      admit(80, null),
      admit(90, null),
      admit(100, null),
      admit(110, { keys: [], values: [] }),
      { kind: 'peek', now: now + 110, checks },
    ];
  }

  async function run(store: KeyValueStore, script: Step[]): Promise<unknown[]> {
    const outputs: unknown[] = [];
    for (const step of script) {
      if (step.kind === 'set') await store.set(step.key, step.value, { ttlMs: 60_000 });
      else if (step.kind === 'delete') await store.delete(step.key);
      else if (step.kind === 'admit') outputs.push(await store.admit(step.request));
      else outputs.push(await standing(store, step.now, step.checks));
    }
    return outputs;
  }

  it('gives the same answer to every admission and peek', async () => {
    const script = steps(`agreement-${randomUUID()}`);
    const fromMemory = await run(memory, script);
    const fromRedis = await run(redis, script);
    const results = fromMemory.filter((output): output is AdmissionResult => typeof output === 'object' && output !== null && 'allowed' in output);
    // The script exercises every outcome, or it proves little.
    expect(results.filter((result) => result.allowed).length).toBeGreaterThanOrEqual(4);
    expect(results.filter((result) => result.failure?.kind === 'precondition').length).toBeGreaterThanOrEqual(4);
    expect(results.filter((result) => result.failure?.kind === 'rate').length).toBeGreaterThanOrEqual(1);
    for (const [index, output] of fromMemory.entries()) expect(fromRedis[index], `output ${index}`).toEqual(output);
  });
});
