// Two gateway instances on one PostgreSQL and one Redis enforce one limit, not two: the checks are
// atomic in Redis, so 200 simultaneous requests against a limit of 100, spread over both
// instances, let exactly 100 through; the auth limit and token quotas are shared the same way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRealServices } from '../helpers/environment.js';
import { randomIp } from '../helpers/auth-client.js';
import {
  adminAccessToken,
  chatBody,
  expectOk,
  expectRefused,
  generate,
  newLimitsCaller,
  setLimits,
  startLimitsGateway,
  type LimitsGateway,
} from '../helpers/limits-fixtures.js';

const LIMIT = 100;
const AUTH_LIMIT = 4;
const DAY_QUOTA = 200;

describe.skipIf(!hasRealServices)('limits shared by two instances', () => {
  let first: LimitsGateway;
  let second: LimitsGateway;

  beforeAll(async () => {
    const environment = {
      RATE_LIMIT_REQUESTS: String(LIMIT),
      RATE_LIMIT_WINDOW: '86400',
      MAX_CONCURRENT_STREAMS: '1000',
      RATE_LIMIT_AUTH_REQUESTS: String(AUTH_LIMIT),
    };
    first = await startLimitsGateway({ backend: 'real', environment });
    second = await startLimitsGateway({ backend: 'real', environment, simulator: first.simulator, sharing: first.testApp });
  });

  afterAll(async () => {
    await second.close();
    await first.close();
  });

  it('lets exactly 100 of 200 simultaneous requests through, spread over both instances', async () => {
    const caller = await newLimitsCaller(first.app);
    const body = chatBody({ max_tokens: 1 });
    const responses = await Promise.all(
      Array.from({ length: 2 * LIMIT }, (_, index) => generate(index % 2 === 0 ? first.app : second.app, { credential: caller.apiKey, remoteAddress: randomIp(), body })),
    );
    const admitted = responses.filter((response) => response.statusCode === 200);
    const refused = responses.filter((response) => response.statusCode !== 200);
    // Each instance got 100 requests: with limits of its own, each would have let all of them
    // through. Exactly 100 in all means every refusal on one instance counted the other's
    // admissions. (Which instance wins how many is a race: one may win them all.)
    expect(admitted).toHaveLength(LIMIT);
    for (const response of refused) expectRefused(response, 'rate_limited');
  });

  it('shares the auth limit of an address between the instances', async () => {
    const ip = randomIp();
    const attempt = (app: LimitsGateway['app']) =>
      app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: `no-such-token-${Math.random()}` }, remoteAddress: ip });
    for (let index = 0; index < AUTH_LIMIT; index += 1) expect((await attempt(index % 2 === 0 ? first.app : second.app)).statusCode).toBe(401);
    expectRefused(await attempt(first.app), 'rate_limited');
    expectRefused(await attempt(second.app), 'rate_limited');
  });

  it('shares a user’s token quota between the instances', async () => {
    const caller = await newLimitsCaller(first.app);
    await setLimits(first.app, await adminAccessToken(first.app), caller.userId, { token_quota_per_day: DAY_QUOTA });
    const spend = await generate(first.app, { credential: caller.apiKey, remoteAddress: randomIp(), body: chatBody({ max_tokens: DAY_QUOTA, ignore_eos: true }) });
    expectOk(spend);
    const refused = await generate(second.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expectRefused(refused, 'quota_exceeded');
  });
});
