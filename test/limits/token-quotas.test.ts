// Token quotas per user, per minute and per day, counted from the usage vLLM reports: refused up
// front once spent (429 quota_exceeded), reserved at admission (max_tokens, or the default
// reservation, plus the prompt) and settled with the real usage, so parallel requests overshoot by
// at most one request; a stream whose client left still counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { newRequestId, openRawPost, readUntil, usageEventFor } from '../helpers/relay-fixtures.js';
import { estimatePromptTokens } from '../../src/chat/stream-observer.js';
import {
  APP_CHAT_JSON_PATH,
  CHAT_PATH,
  awaitRoomInWindow,
  chatBody,
  eventually,
  expectNoTokenLimitHeaders,
  expectNotRelayed,
  expectOk,
  expectRefused,
  expectRequestLimitHeaders,
  expectTokenLimitHeaders,
  generate,
  myUsage,
  newLimitsCaller,
  rejectionsByReason,
  rejectionsSince,
  startLimitsGateway,
  type LimitsGateway,
} from '../helpers/limits-fixtures.js';

const MINUTE_QUOTA = 400;
const DAY_QUOTA = 100_000;
const DEFAULT_RESERVATION = 400;
const minuteMs = 60_000;
const dayMs = 86_400_000;

interface Completion {
  usage: { prompt_tokens: number; completion_tokens: number };
}

function usedBy(body: string): number {
  const { usage } = JSON.parse(body) as Completion;
  return usage.prompt_tokens + usage.completion_tokens;
}

describe.each(backends)('token quotas per minute and per day (%s)', (backend) => {
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({
      backend,
      environment: {
        TOKEN_QUOTA_PER_MINUTE: String(MINUTE_QUOTA),
        TOKEN_QUOTA_PER_DAY: String(DAY_QUOTA),
        TOKEN_RESERVATION_DEFAULT: String(DEFAULT_RESERVATION),
        MAX_CONCURRENT_STREAMS: '50',
      },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('counts the tokens vLLM reports, reserves max_tokens plus the prompt up front, and shows both windows in /api/me/usage', async () => {
    await awaitRoomInWindow(minuteMs, 8000);
    const caller = await newLimitsCaller(gateway.app);
    const body = chatBody({ max_tokens: 20, ignore_eos: true });
    const reservation = estimatePromptTokens(body) + 20;

    const first = await generate(gateway.app, { credential: caller.apiKey, body });
    expectOk(first);
    expectRequestLimitHeaders(first.headers, { limit: 100_000, remaining: 99_999 });
    expectTokenLimitHeaders(first.headers, { limit: MINUTE_QUOTA, remaining: MINUTE_QUOTA - reservation });
    const firstUsed = usedBy(first.body);
    expect(JSON.parse(first.body)).toMatchObject({ usage: { completion_tokens: 20 } });

    const usage = await eventually(async () => {
      const current = await myUsage(gateway.app, caller.accessToken);
      expect(current.tokens_per_minute?.used).toBe(firstUsed);
      return current;
    });
    expect(usage.tokens_per_minute).toEqual({ limit: MINUTE_QUOTA, used: firstUsed, remaining: MINUTE_QUOTA - firstUsed, reset_seconds: expect.any(Number) });
    expect(usage.tokens_per_minute!.reset_seconds).toBeGreaterThanOrEqual(1);
    expect(usage.tokens_per_minute!.reset_seconds).toBeLessThanOrEqual(60);
    expect(usage.tokens_per_day).toEqual({ limit: DAY_QUOTA, used: firstUsed, remaining: DAY_QUOTA - firstUsed, reset_seconds: expect.any(Number) });
    expect(usage.tokens_per_day!.reset_seconds).toBeLessThanOrEqual(86_400);

    // The app's own chat API counts against the same quota; its headers start from the settled usage.
    const second = await generate(gateway.app, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH, body: { ...body, store: false } });
    expectOk(second);
    expectTokenLimitHeaders(second.headers, { limit: MINUTE_QUOTA, remaining: MINUTE_QUOTA - firstUsed - reservation });
    const secondUsed = usedBy(second.body);
    await eventually(async () => expect((await myUsage(gateway.app, caller.accessToken)).tokens_per_minute?.used).toBe(firstUsed + secondUsed));
  });

  it('refuses up front with 429 quota_exceeded once the minute’s tokens are spent, without calling vLLM', async () => {
    await awaitRoomInWindow(minuteMs, 8000);
    const caller = await newLimitsCaller(gateway.app);
    const spend = await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: MINUTE_QUOTA, ignore_eos: true }) });
    expectOk(spend);
    expect(usedBy(spend.body)).toBeGreaterThanOrEqual(MINUTE_QUOTA);

    const rejectionsBefore = await rejectionsByReason(gateway.app);
    const refused = await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: 1 }) });
    const retryAfter = expectRefused(refused, 'quota_exceeded');
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect([...rejectionsSince(rejectionsBefore, await rejectionsByReason(gateway.app)).values()]).toEqual([1]);
    expectNotRelayed(gateway.simulator, refused.requestId);
    const usage = await myUsage(gateway.app, caller.accessToken);
    expect(usage.tokens_per_minute?.remaining).toBe(0);

    // Another user's quota is untouched.
    const other = await newLimitsCaller(gateway.app);
    expectOk(await generate(gateway.app, { credential: other.apiKey }));
  });

  it('tells a client refused for tokens where it stands: the token headers on the quota_exceeded 429', async () => {
    await awaitRoomInWindow(minuteMs, 8000);
    const caller = await newLimitsCaller(gateway.app);
    expectOk(await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: MINUTE_QUOTA, ignore_eos: true }) }));
    const refused = await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: 1 }) });
    expectRefused(refused, 'quota_exceeded');
    expectTokenLimitHeaders(refused.headers, { limit: MINUTE_QUOTA, remaining: 0 });
    // The request rate was not what refused it: the request headers say what is really left.
    expectRequestLimitHeaders(refused.headers, { limit: 100_000 });
    expect(Number(refused.headers['ratelimit-remaining'])).toBeGreaterThan(0);
  });

  it('lets parallel requests overshoot the quota by at most one request’s worth', async () => {
    await awaitRoomInWindow(minuteMs, 8000);
    const caller = await newLimitsCaller(gateway.app);
    const body = chatBody({ max_tokens: 150, ignore_eos: true });
    // A slow first token keeps every admitted request running while the others are admitted.
    gateway.simulator.update({ timeToFirstTokenMs: 200 });
    let responses: Awaited<ReturnType<typeof generate>>[];
    try {
      responses = await Promise.all(Array.from({ length: 8 }, () => generate(gateway.app, { credential: caller.apiKey, body })));
    } finally {
      gateway.simulator.update({ timeToFirstTokenMs: 0 });
    }
    const admitted = responses.filter((response) => response.statusCode === 200);
    const refused = responses.filter((response) => response.statusCode !== 200);
    for (const response of refused) expectRefused(response, 'quota_exceeded');
    expect(refused.length).toBeGreaterThan(0);

    const used = admitted.map((response) => usedBy(response.body));
    const total = used.reduce((sum, value) => sum + value, 0);
    expect(total, `admitted ${admitted.length}, each ${used.join(', ')}`).toBeLessThanOrEqual(MINUTE_QUOTA + Math.max(...used));
    expect(total).toBeGreaterThanOrEqual(MINUTE_QUOTA - Math.max(...used));
    await eventually(async () => expect((await myUsage(gateway.app, caller.accessToken)).tokens_per_minute?.used).toBe(total));
  });

  it('reserves TOKEN_RESERVATION_DEFAULT for a request without max_tokens while it runs, then settles to the real usage', async () => {
    await awaitRoomInWindow(minuteMs, 8000);
    const caller = await newLimitsCaller(gateway.app);
    gateway.simulator.update({ timeToFirstTokenMs: 400 });
    let text: string;
    try {
      const exchange = openRawPost({ url: gateway.url, path: CHAT_PATH, body: chatBody({ max_tokens: null, stream: true }), credential: caller.apiKey, requestId: newRequestId() });
      const response = await exchange.response;
      expect(response.statusCode).toBe(200);
      expectTokenLimitHeaders(response.headers, { limit: MINUTE_QUOTA, remaining: 0 });

      // While it runs, its reservation fills the minute: a small request is refused.
      expectRefused(await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: 1 }) }), 'quota_exceeded');
      text = await readUntil(response, (received) => received.includes('data: [DONE]'), 5000);
    } finally {
      gateway.simulator.update({ timeToFirstTokenMs: 0 });
    }
    expect(text).toContain('data: [DONE]');

    // Settled with the real usage (a natural end within 40 tokens), the rest of the minute is free again.
    const usage = await eventually(async () => {
      const current = await myUsage(gateway.app, caller.accessToken);
      expect(current.tokens_per_minute?.used).toBeLessThan(MINUTE_QUOTA / 2);
      return current;
    });
    expect(usage.tokens_per_minute?.used).toBeGreaterThan(0);
    expectOk(await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: 1 }) }));
  });

  it('counts the tokens of a stream whose client left', async () => {
    await awaitRoomInWindow(minuteMs, 8000);
    const caller = await newLimitsCaller(gateway.app);
    const requestId = newRequestId();
    gateway.simulator.update({ interTokenMs: 10 });
    const exchange = openRawPost({
      url: gateway.url,
      path: CHAT_PATH,
      body: chatBody({ stream: true, max_tokens: 300, ignore_eos: true }),
      credential: caller.apiKey,
      requestId,
    });
    try {
      const response = await exchange.response;
      expect(response.statusCode).toBe(200);
      await readUntil(response, (text) => text.split('"content":"').length > 6, 3000);
      exchange.destroy();
    } finally {
      gateway.simulator.update({ interTokenMs: 0 });
    }

    const event = await usageEventFor(gateway.app, requestId);
    expect(event.status).toBe('aborted');
    const counted = (event.prompt_tokens ?? 0) + (event.completion_tokens ?? 0);
    expect(event.completion_tokens).toBeGreaterThanOrEqual(5);
    // What the usage row says was used is what the quota counted: not nothing, not the whole reservation.
    await eventually(async () => expect((await myUsage(gateway.app, caller.accessToken)).tokens_per_minute?.used).toBe(counted));
    expect(counted).toBeLessThan(300);
  });
});

describe.each(backends)('a daily quota alone (%s)', (backend) => {
  const dailyQuota = 300;
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({ backend, environment: { TOKEN_QUOTA_PER_DAY: String(dailyQuota) } });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('shows no minute window, sends the day’s token headers, and refuses once the day’s tokens are spent', async () => {
    await awaitRoomInWindow(dayMs, 10_000);
    const caller = await newLimitsCaller(gateway.app);
    const spend = await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: dailyQuota, ignore_eos: true }) });
    expectOk(spend);
    expectTokenLimitHeaders(spend.headers, { limit: dailyQuota });
    const used = usedBy(spend.body);

    const usage = await eventually(async () => {
      const current = await myUsage(gateway.app, caller.accessToken);
      expect(current.tokens_per_day?.used).toBe(used);
      return current;
    });
    expect(usage.tokens_per_minute).toBeNull();
    expect(usage.tokens_per_day).toMatchObject({ limit: dailyQuota, used, remaining: 0 });

    const refused = await generate(gateway.app, { credential: caller.apiKey });
    const retryAfter = expectRefused(refused, 'quota_exceeded');
    expect(retryAfter).toBeLessThanOrEqual(86_400);
    expectNotRelayed(gateway.simulator, refused.requestId);
  });

  it('sends no token headers to a caller without a token quota', async () => {
    const plain = await startLimitsGateway({ backend, simulator: gateway.simulator });
    try {
      const caller = await newLimitsCaller(plain.app);
      const response = await generate(plain.app, { credential: caller.apiKey });
      expectOk(response);
      expectNoTokenLimitHeaders(response.headers);
      const usage = await myUsage(plain.app, caller.accessToken);
      expect(usage.tokens_per_minute).toBeNull();
      expect(usage.tokens_per_day).toBeNull();
    } finally {
      await plain.close();
    }
  });
});
