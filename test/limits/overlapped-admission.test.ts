// LIMITS_OVERLAP_ADMISSION=true: a /v1 request of a caller far from its limits leaves for vLLM
// while Redis decides its admission. Nothing reaches the client before Redis has admitted it; a
// refusal (a limit other instances used up, a credential changed) aborts vLLM's request at once and
// is answered exactly as without the overlap, with nothing charged or recorded; and a caller that
// was refused, or that Redis has not admitted yet on this instance, is never overlapped.
// A TCP proxy in front of Redis slows its answers so that "before Redis answered" is observable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRealServices, testRedisUrl } from '../helpers/environment.js';
import { bearer, expectError, randomIp } from '../helpers/auth-client.js';
import { upstreamRequestsFor } from '../helpers/relay-fixtures.js';
import {
  adminAccessToken,
  chatBody,
  eventually,
  expectNotRelayed,
  expectOk,
  expectRefused,
  expectRequestLimitHeaders,
  generate,
  metricValue,
  newLimitsCaller,
  setLimits,
  sleep,
  startLimitsGateway,
  startTcpProxy,
  type LimitsGateway,
  type TcpProxy,
} from '../helpers/limits-fixtures.js';

const USER_REQUESTS = 20;
/** Redis's answers held this long each way while a test watches what reached vLLM meanwhile. */
const SLOW_REDIS_MS = 400;
const environment = {
  LIMITS_OVERLAP_ADMISSION: 'true',
  LIMITS_STORE_TIMEOUT_MS: '5000',
  RATE_LIMIT_REQUESTS: String(USER_REQUESTS),
  RATE_LIMIT_WINDOW: '86400',
  MAX_CONCURRENT_STREAMS: '40',
};

describe.skipIf(!hasRealServices)('admission overlapped with vLLM’s start (LIMITS_OVERLAP_ADMISSION=true)', () => {
  let proxy: TcpProxy;
  let first: LimitsGateway;
  let second: LimitsGateway;

  beforeAll(async () => {
    proxy = await startTcpProxy(testRedisUrl!);
    // vLLM takes 300 ms to its first token: a refusal arrives while it is still working.
    first = await startLimitsGateway({ backend: 'real', environment: { ...environment, REDIS_URL: proxy.redisUrl }, simulatorOptions: { timeToFirstTokenMs: 300 } });
    second = await startLimitsGateway({ backend: 'real', environment, simulator: first.simulator, sharing: first.testApp });
  });

  afterAll(async () => {
    proxy.setDelay(0);
    await second.close();
    await first.close();
    await proxy.close();
  });

  const overlapped = (outcome: string) => metricValue(first.app, 'rate_limit_overlapped_admissions_total', { outcome });
  const aborted = () => first.simulator.stats().finished.abort;
  const requestsCounted = () => metricValue(first.app, 'chat_requests_total');

  /** Whether vLLM received the request within `withinMs`. */
  async function reachedVllm(requestId: string, withinMs: number): Promise<boolean> {
    const deadline = Date.now() + withinMs;
    while (Date.now() < deadline) {
      if (upstreamRequestsFor(first.simulator, requestId).length > 0) return true;
      await sleep(10);
    }
    return false;
  }

  /**
   * A generation on the first instance while Redis answers 100 ms late each way: it must reach vLLM
   * (the overlap) and be aborted there before its first token (300 ms). Returns the answer.
   */
  async function generateAbortedAtVllm(credential: string, ip: string) {
    const abortedBefore = aborted();
    proxy.setDelay(SLOW_REDIS_MS / 4);
    let response;
    try {
      response = await generate(first.app, { credential, remoteAddress: ip });
    } finally {
      proxy.setDelay(0);
    }
    expect(upstreamRequestsFor(first.simulator, response.requestId)).toHaveLength(1);
    await eventually(async () => expect(aborted()).toBe(abortedBefore + 1));
    return response;
  }

  it('sends a request to vLLM before Redis has answered its admission, and answers only once it is granted', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    // The first generation on this instance: Redis has not admitted the caller here yet.
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    const before = await overlapped('admitted');

    proxy.setDelay(SLOW_REDIS_MS);
    try {
      const requestId = `overlap-${Math.random()}`;
      let answered = false;
      const answer = generate(first.app, { credential: caller.apiKey, remoteAddress: ip, requestId }).finally(() => {
        answered = true;
      });
      // Redis cannot have answered within 2 × 400 ms; vLLM has the request long before.
      expect(await reachedVllm(requestId, SLOW_REDIS_MS)).toBe(true);
      expect(answered).toBe(false);
      const response = await answer;
      expectOk(response);
      // Counted exactly once, as without the overlap.
      expectRequestLimitHeaders(response.headers, { limit: USER_REQUESTS, remaining: USER_REQUESTS - 2 });
    } finally {
      proxy.setDelay(0);
    }
    expect(await overlapped('admitted')).toBe(before + 1);
  });

  it('waits for the admission of a caller Redis has not admitted on this instance yet', async () => {
    const caller = await newLimitsCaller(first.app);
    proxy.setDelay(SLOW_REDIS_MS);
    try {
      const requestId = `not-overlapped-${Math.random()}`;
      const answer = generate(first.app, { credential: caller.apiKey, remoteAddress: randomIp(), requestId });
      expect(await reachedVllm(requestId, SLOW_REDIS_MS)).toBe(false);
      expectOk(await answer);
      expect(upstreamRequestsFor(first.simulator, requestId)).toHaveLength(1);
    } finally {
      proxy.setDelay(0);
    }
  });

  it('aborts vLLM’s request when the admission is refused (the rate used up on another instance), answers the 429, and records nothing', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    // The other instance spends the rest of the caller's requests; this one does not know.
    // At once: the credential's cached state stays fresh (4 of its 5 s) for the overlap that follows.
    const spent = await Promise.all(Array.from({ length: USER_REQUESTS - 1 }, () => generate(second.app, { credential: caller.apiKey, remoteAddress: ip, body: chatBody({ max_tokens: 1 }) })));
    for (const response of spent) expectOk(response);

    const refusedBefore = await overlapped('refused');
    const countedBefore = await requestsCounted();
    const refused = await generateAbortedAtVllm(caller.apiKey, ip);
    expectRefused(refused, 'rate_limited');
    expectRequestLimitHeaders(refused.headers, { limit: USER_REQUESTS, remaining: 0 });
    expect(await overlapped('refused')).toBe(refusedBefore + 1);
    // Not a relayed request: no chat_requests_total, as for any refusal.
    expect(await requestsCounted()).toBe(countedBefore);

    // Refused once: the next request waits for its admission, and reaches nothing.
    const next = await generate(first.app, { credential: caller.apiKey, remoteAddress: ip });
    expectRefused(next, 'rate_limited');
    expectNotRelayed(first.simulator, next.requestId);
    expect(await overlapped('refused')).toBe(refusedBefore + 1);
  });

  it('answers 401 for a key revoked on another instance: its request was aborted at vLLM, and the next one never reaches it', async () => {
    const caller = await newLimitsCaller(first.app);
    const ip = randomIp();
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }));
    const keys = await second.app.inject({ method: 'GET', url: '/api/keys', headers: bearer(caller.accessToken) });
    const keyId = keys.json<{ data: Array<{ id: string }> }>().data[0]!.id;
    expect((await second.app.inject({ method: 'DELETE', url: `/api/keys/${keyId}`, headers: bearer(caller.accessToken) })).statusCode).toBe(204);

    const changedBefore = await overlapped('access_changed');
    const response = await generateAbortedAtVllm(caller.apiKey, ip);
    expectError(response, 401, 'invalid_api_key');
    expect(await overlapped('access_changed')).toBe(changedBefore + 1);

    const next = await generate(first.app, { credential: caller.apiKey, remoteAddress: ip });
    expectError(next, 401, 'invalid_api_key');
    expectNotRelayed(first.simulator, next.requestId);
  });

  it('never overlaps a caller near its request limit: the last two of eight wait for Redis', async () => {
    const caller = await newLimitsCaller(first.app);
    const limit = 8;
    // Eight requests of 300 ms fit in the 4 s the credential's cached state counts as fresh.
    await setLimits(first.app, await adminAccessToken(first.app), caller.userId, { rate_limit_requests: limit });
    const ip = randomIp();
    const before = await overlapped('admitted');
    const refusedBefore = await overlapped('refused');
    for (let index = 0; index < limit; index += 1) expectOk(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip, body: chatBody({ max_tokens: 1 }) }));
    expectRefused(await generate(first.app, { credential: caller.apiKey, remoteAddress: ip }), 'rate_limited');
    // The first waited (no answer yet); the 2nd to the 7th ran beside theirs (at least 2 were left
    // before each); the 8th and the refused 9th waited.
    expect(await overlapped('admitted')).toBe(before + limit - 2);
    expect(await overlapped('refused')).toBe(refusedBefore);
  });
});

describe('admission overlap when Redis does not decide', () => {
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({ backend: 'embedded', environment });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('never overlaps on the in-process store, whose admission costs no round trip', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const ip = randomIp();
    for (let index = 0; index < 3; index += 1) expectOk(await generate(gateway.app, { credential: caller.apiKey, remoteAddress: ip }));
    expect(await metricValue(gateway.app, 'rate_limit_overlapped_admissions_total')).toBe(0);
  });
});
