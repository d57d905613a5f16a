// Login throttling with the default limits: guessing one account's password from one address is
// stopped within ten tries, guessing across accounts from one address too, while the real owner
// logging in from elsewhere is never locked out.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { expectError, login, loginRequest, randomIp, register, strongPassword, uniqueEmail } from '../helpers/auth-client.js';

describe.each(backends)('login throttling (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend });
  });

  afterAll(async () => {
    await testApp.close();
  });

  /** Fails to log in until the answer is 429, giving up after `maximum` tries; answers the 429. */
  async function failUntilThrottled(options: { maximum: number; attempt: (index: number) => Promise<LightMyRequestResponse> }): Promise<{ throttled: LightMyRequestResponse | null; tries: number }> {
    for (let index = 0; index < options.maximum; index += 1) {
      const response = await options.attempt(index);
      if (response.statusCode === 429) return { throttled: response, tries: index + 1 };
      expectError(response, 401, 'invalid_credentials');
    }
    return { throttled: null, tries: options.maximum };
  }

  function expectThrottled(response: LightMyRequestResponse | null): void {
    expect(response, 'no 429 came').not.toBeNull();
    expectError(response!, 429, 'rate_limited');
    const retryAfter = Number(response!.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThan(0);
  }

  it('throttles repeated failures for one account from one address within ten failures', async () => {
    const account = await register(testApp.app, { remoteAddress: randomIp() });
    const attacker = randomIp();
    const { throttled, tries } = await failUntilThrottled({
      maximum: 11,
      attempt: () => loginRequest(testApp.app, { email: account.email, password: strongPassword(), remoteAddress: attacker }),
    });
    expectThrottled(throttled);
    expect(tries).toBeGreaterThan(1);

    // While throttled, even the right password from that address gets no token.
    const rightGuess = await loginRequest(testApp.app, { email: account.email, password: account.password, remoteAddress: attacker });
    expectError(rightGuess, 429, 'rate_limited');
  });

  it('still lets the owner log in from another address while the account is throttled for one', async () => {
    const account = await register(testApp.app, { remoteAddress: randomIp() });
    const attacker = randomIp();
    const { throttled } = await failUntilThrottled({
      maximum: 11,
      attempt: () => loginRequest(testApp.app, { email: account.email, password: strongPassword(), remoteAddress: attacker }),
    });
    expectThrottled(throttled);

    const tokens = await login(testApp.app, { email: account.email, password: account.password, remoteAddress: randomIp() });
    expect(tokens.user.id).toBe(account.user.id);
  });

  it('throttles one address failing over many different emails', async () => {
    const attacker = randomIp();
    const { throttled } = await failUntilThrottled({
      maximum: 60,
      attempt: () => loginRequest(testApp.app, { email: uniqueEmail('spray'), password: strongPassword(), remoteAddress: attacker }),
    });
    expectThrottled(throttled);

    // Other addresses are not affected.
    const account = await register(testApp.app, { remoteAddress: randomIp() });
    await login(testApp.app, { email: account.email, password: account.password, remoteAddress: randomIp() });
  });
});
