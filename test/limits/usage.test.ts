// What a user and an operator can read about usage: GET /api/me/usage (limits, what is left, and
// today's totals by model — failures and aborted streams included) and GET /api/admin/usage
// (totals by user and model over a time range, admin only). The numbers must match the requests made.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { bearer, expectError } from '../helpers/auth-client.js';
import { newRequestId, openRawPost, readUntil, usageEventFor, type UsageEventRow } from '../helpers/relay-fixtures.js';
import {
  APP_CHAT_JSON_PATH,
  CHAT_PATH,
  COMPLETIONS_PATH,
  SIM_MODEL,
  adminAccessToken,
  chatBody,
  completionBody,
  expectOk,
  generate,
  myUsage,
  newLimitsCaller,
  startLimitsGateway,
  type LimitsCaller,
  type LimitsGateway,
  type UsageTotalsRow,
} from '../helpers/limits-fixtures.js';

const REQUEST_LIMIT = 50;
const WINDOW_SECONDS = 3600;
const MAX_STREAMS = 3;
const OTHER_MODEL = 'sim-qwen-2-7b';

interface AdminUsageBody {
  from: string;
  to: string;
  data: Array<UsageTotalsRow & { user_id: string }>;
}

/** Totals of usage rows the way the endpoints sum them. */
function totalsOf(rows: UsageEventRow[], model: string): UsageTotalsRow {
  const mine = rows.filter((row) => row.model === model);
  return {
    model,
    requests: mine.length,
    prompt_tokens: mine.reduce((sum, row) => sum + (row.prompt_tokens ?? 0), 0),
    completion_tokens: mine.reduce((sum, row) => sum + (row.completion_tokens ?? 0), 0),
    errors: mine.filter((row) => ['upstream_error', 'client_error', 'timeout'].includes(row.status)).length,
    aborted: mine.filter((row) => row.status === 'aborted').length,
  };
}

describe.each(backends)('usage endpoints (%s)', (backend) => {
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({
      backend,
      environment: { RATE_LIMIT_REQUESTS: String(REQUEST_LIMIT), RATE_LIMIT_WINDOW: String(WINDOW_SECONDS), MAX_CONCURRENT_STREAMS: String(MAX_STREAMS) },
      simulatorOptions: {
        models: [
          { id: SIM_MODEL, maxModelLen: 8192 },
          { id: OTHER_MODEL, maxModelLen: 8192 },
        ],
      },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  /** A varied day for one caller: answers on two models and three routes, a vLLM failure, a stream its client left. */
  async function makeRequests(caller: LimitsCaller): Promise<{ requestIds: string[] }> {
    const requestIds: string[] = [];
    const ok = [
      await generate(gateway.app, { credential: caller.apiKey, path: CHAT_PATH, body: chatBody({ max_tokens: 7, ignore_eos: true }) }),
      await generate(gateway.app, { credential: caller.accessToken, path: COMPLETIONS_PATH, body: completionBody({ max_tokens: 5, ignore_eos: true }) }),
      await generate(gateway.app, { credential: caller.accessToken, path: APP_CHAT_JSON_PATH, body: chatBody({ max_tokens: 3, ignore_eos: true }) }),
      await generate(gateway.app, { credential: caller.apiKey, path: CHAT_PATH, body: chatBody({ model: OTHER_MODEL, max_tokens: 4, ignore_eos: true }) }),
    ];
    for (const response of ok) {
      expectOk(response);
      requestIds.push(response.requestId);
    }
    const failed = await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ sim_fault: { status: 500 } }) });
    expect(failed.statusCode, failed.body).toBe(502);
    requestIds.push(failed.requestId);

    const abortedId = newRequestId();
    gateway.simulator.update({ interTokenMs: 10 });
    try {
      const exchange = openRawPost({ url: gateway.url, path: CHAT_PATH, body: chatBody({ stream: true, max_tokens: 300, ignore_eos: true }), credential: caller.apiKey, requestId: abortedId });
      const response = await exchange.response;
      expect(response.statusCode).toBe(200);
      await readUntil(response, (text) => text.includes('"content":"'), 3000);
      exchange.destroy();
    } finally {
      gateway.simulator.update({ interTokenMs: 0 });
    }
    requestIds.push(abortedId);
    return { requestIds };
  }

  async function rowsOf(requestIds: string[]): Promise<UsageEventRow[]> {
    const rows: UsageEventRow[] = [];
    for (const requestId of requestIds) rows.push(await usageEventFor(gateway.app, requestId));
    return rows;
  }

  it('shows a new user the limits and nothing used', async () => {
    const caller = await newLimitsCaller(gateway.app);
    expect(await myUsage(gateway.app, caller.accessToken)).toEqual({
      requests: { limit: REQUEST_LIMIT, remaining: REQUEST_LIMIT, window_seconds: WINDOW_SECONDS, reset_seconds: 0 },
      tokens_per_minute: null,
      tokens_per_day: null,
      max_concurrent_streams: MAX_STREAMS,
      today: [],
    });
  });

  it('counts every request in what is left, and today’s totals by model match the requests made (errors and aborted streams included)', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const { requestIds } = await makeRequests(caller);
    const rows = await rowsOf(requestIds);
    expect(rows.map((row) => row.status).sort()).toEqual(['aborted', 'ok', 'ok', 'ok', 'ok', 'upstream_error']);
    await gateway.app.gateway.flushUsage();

    const usage = await myUsage(gateway.app, caller.apiKey);
    expect(usage.requests).toMatchObject({ limit: REQUEST_LIMIT, remaining: REQUEST_LIMIT - requestIds.length, window_seconds: WINDOW_SECONDS });
    // Six requests, each holding 1/50 of an hour (72 s) of the budget.
    expect(usage.requests.reset_seconds).toBeGreaterThan(6 * 72 - 30);
    expect(usage.requests.reset_seconds).toBeLessThanOrEqual(6 * 72);
    expect(usage.today).toEqual([totalsOf(rows, SIM_MODEL), totalsOf(rows, OTHER_MODEL)].sort((a, b) => a.model.localeCompare(b.model)));
    const main = usage.today.find((row) => row.model === SIM_MODEL)!;
    expect(main).toMatchObject({ requests: 5, errors: 1, aborted: 1 });
    expect(main.completion_tokens).toBeGreaterThanOrEqual(7 + 5 + 3);

    // Another user's usage is not mixed in.
    const other = await newLimitsCaller(gateway.app);
    expect((await myUsage(gateway.app, other.accessToken)).today).toEqual([]);
  });

  it('answers GET /api/admin/usage with totals by user and model, filtered by user and time range', async () => {
    const first = await newLimitsCaller(gateway.app);
    const second = await newLimitsCaller(gateway.app);
    const { requestIds } = await makeRequests(first);
    const firstRows = await rowsOf(requestIds);
    const secondCall = await generate(gateway.app, { credential: second.apiKey, body: chatBody({ max_tokens: 2, ignore_eos: true }) });
    expectOk(secondCall);
    const secondRows = await rowsOf([secondCall.requestId]);
    await gateway.app.gateway.flushUsage();
    const token = await adminAccessToken(gateway.app);

    const all = await gateway.app.inject({ method: 'GET', url: '/api/admin/usage', headers: bearer(token) });
    expect(all.statusCode, all.body).toBe(200);
    const allBody = all.json<AdminUsageBody>();
    expect(Date.parse(allBody.to) - Date.parse(allBody.from)).toBe(86_400_000);
    expect(allBody.data.filter((row) => row.user_id === first.userId)).toEqual(
      [totalsOf(firstRows, SIM_MODEL), totalsOf(firstRows, OTHER_MODEL)].map((totals) => ({ user_id: first.userId, ...totals })).sort((a, b) => a.model.localeCompare(b.model)),
    );
    expect(allBody.data.filter((row) => row.user_id === second.userId)).toEqual([{ user_id: second.userId, ...totalsOf(secondRows, SIM_MODEL) }]);

    const from = new Date(Date.now() - 3_600_000).toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    const filtered = await gateway.app.inject({ method: 'GET', url: '/api/admin/usage', headers: bearer(token), query: { user_id: second.userId, from, to } });
    expect(filtered.statusCode, filtered.body).toBe(200);
    expect(filtered.json<AdminUsageBody>()).toEqual({ from, to, data: [{ user_id: second.userId, ...totalsOf(secondRows, SIM_MODEL) }] });

    // A range that ends before the requests holds none of them.
    const before = await gateway.app.inject({
      method: 'GET',
      url: '/api/admin/usage',
      headers: bearer(token),
      query: { user_id: first.userId, from: new Date(Date.now() - 7_200_000).toISOString(), to: new Date(Date.now() - 3_600_000).toISOString() },
    });
    expect(before.statusCode, before.body).toBe(200);
    expect(before.json<AdminUsageBody>().data).toEqual([]);
  });

  it('keeps /api/admin/usage to administrators and checks its parameters', async () => {
    const caller = await newLimitsCaller(gateway.app);
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/admin/usage', headers: bearer(caller.accessToken) }), 403, 'forbidden');
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/admin/usage', headers: bearer(caller.apiKey) }), 403, 'forbidden');
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/admin/usage' }), 401, 'unauthorized');

    const token = await adminAccessToken(gateway.app);
    const now = Date.now();
    const reversed = await gateway.app.inject({
      method: 'GET',
      url: '/api/admin/usage',
      headers: bearer(token),
      query: { from: new Date(now).toISOString(), to: new Date(now - 1000).toISOString() },
    });
    expectError(reversed, 400, 'validation_failed');
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/admin/usage', headers: bearer(token), query: { user_id: 'not-a-uuid' } }), 400, 'validation_failed');
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/admin/usage', headers: bearer(token), query: { from: 'yesterday' } }), 400, 'validation_failed');
  });

  it('requires a credential for /api/me/usage', async () => {
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/me/usage' }), 401, 'unauthorized');
  });
});
