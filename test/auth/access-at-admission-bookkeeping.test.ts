// What a generation on the fast path (a credential this process judged before, confirmed by the
// admission script itself) leaves behind when the admission does not confirm it:
// - Redis answered the admission too late: the request was decided on this instance's memory, where
//   the judged credential's values are never held, so the precondition failed there; the late
//   Redis admission, which did admit, must be given back (slot released, reservation refunded).
// - the key was revoked since it was judged: the refused request must not count as a use of the
//   key (no `last_used_at` after `revoked_at`), while a use the admission confirmed still counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { buildApp, type App } from '../../src/app.js';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database.js';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { backends, dropSchema, hasRealServices, testConfig, testRedisUrl, type Backend } from '../helpers/environment.js';
import { bearer, createApiKey, expectError, randomIp, relaxedAuthLimits, signUp } from '../helpers/auth-client.js';
import { SIM_CREATED } from '../helpers/listening-gateway.js';
import { deleteKeys } from '../helpers/test-app.js';
import {
  awaitRoomInWindow,
  eventually,
  expectOk,
  generate,
  metricValue,
  myUsage,
  newLimitsCaller,
  sleep,
  startLimitsGateway,
  startTcpProxy,
  type LimitsGateway,
  type MyUsage,
  type TcpProxy,
} from '../helpers/limits-fixtures.js';

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

function tokensOf(response: LightMyRequestResponse): number {
  const { usage } = response.json<{ usage: Usage }>();
  return usage.prompt_tokens + usage.completion_tokens;
}

const STORE_TIMEOUT_MS = 50;
/** Well above STORE_TIMEOUT_MS: every admission gives up on Redis and decides on this instance. */
const SLOW_REDIS_MS = 150;

describe.skipIf(!hasRealServices)('a fast-path admission Redis answered too late (Redis behind a slow proxy)', () => {
  let proxy: TcpProxy;
  let gateway: LimitsGateway;

  beforeAll(async () => {
    proxy = await startTcpProxy(testRedisUrl!);
    gateway = await startLimitsGateway({
      backend: 'real',
      environment: {
        REDIS_URL: proxy.redisUrl,
        LIMITS_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS),
        RATE_LIMIT_REQUESTS: '50',
        MAX_CONCURRENT_STREAMS: '1',
        TOKEN_QUOTA_PER_DAY: '100000',
      },
    });
  });

  afterAll(async () => {
    await gateway.close();
    await proxy.close();
  });

  const fallbackTotal = () => metricValue(gateway.app, 'rate_limit_store_fallback_total');
  const fallbackActive = () => metricValue(gateway.app, 'rate_limit_store_fallback_active');

  /** Waits until limit checks run on Redis again; returns the caller's usage as Redis holds it. */
  async function usageOnRedis(credential: string): Promise<MyUsage> {
    return eventually(
      async () => {
        const usage = await myUsage(gateway.app, credential);
        // This very read was answered by Redis in time (it clears the flag), not by this instance's memory.
        expect(await fallbackActive()).toBe(0);
        return usage;
      },
      8000,
      100,
    );
  }

  it('holds no slot and no reservation in Redis afterwards: the next generation is admitted, and the day’s tokens are the real usage', async () => {
    await awaitRoomInWindow(86_400_000, 15_000);
    const caller = await newLimitsCaller(gateway.app);
    // Judged by this process (the full check); from now on the key takes the fast path.
    const judged = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expectOk(judged);

    const fallbacksBefore = await fallbackTotal();
    proxy.setDelay(SLOW_REDIS_MS);
    let slow: LightMyRequestResponse;
    try {
      // The precondition fails on this instance's memory; the key is checked in full and the
      // generation admitted there. Redis, answering late, admitted the first (precondition) check.
      slow = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
      expectOk(slow);
      expect(await fallbackTotal()).toBeGreaterThanOrEqual(fallbacksBefore + 2);
      expect(await fallbackActive()).toBe(1);
      // Let the late answers reach Redis, and what they trigger go out, before the delay is lifted.
      await sleep(3 * SLOW_REDIS_MS);
    } finally {
      proxy.setDelay(0);
    }
    await gateway.app.gateway.flushUsage();
    const onRedis = await usageOnRedis(caller.accessToken);

    // What the two generations really used, as vLLM reported it and as the gateway recorded it.
    const used = tokensOf(judged) + tokensOf(slow);
    const recorded = onRedis.today.reduce((total, row) => total + row.prompt_tokens + row.completion_tokens, 0);
    expect(recorded).toBe(used);
    // The day's counter in Redis holds exactly that: no reservation of a late admission left unsettled.
    expect.soft(onRedis.tokens_per_day?.used, 'tokens of the day in Redis').toBe(used);

    // Both generations are over: with a cap of one stream, the next one is admitted (no leaked slot).
    const next = await generate(gateway.app, { credential: caller.apiKey, remoteAddress: randomIp() });
    expect(next.statusCode, next.body).toBe(200);
  });
});

/**
 * A gateway whose database belongs to the test, so it outlives the app: closing the app writes the
 * API keys' pending uses (they are otherwise written every 30 s), and the rows are read after.
 */
interface OwnDatabaseGateway {
  app: App;
  database: DatabaseHandle;
  /** Closes the app, which writes the pending key uses; the database stays open. */
  closeApp: () => Promise<void>;
  close: () => Promise<void>;
}

async function startOwnDatabaseGateway(backend: Backend, simulator: Simulator): Promise<OwnDatabaseGateway> {
  const config = testConfig({ backend, environment: { ...relaxedAuthLimits, VLLM_BASE_URL: simulator.url } });
  const database = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
  let app: App;
  try {
    app = await buildApp(config, { database });
  } catch (error) {
    await database.close();
    throw error;
  }
  let appClosed = false;
  const closeApp = async () => {
    if (appClosed) return;
    appClosed = true;
    await app.close();
  };
  return {
    app,
    database,
    closeApp,
    close: async () => {
      await closeApp();
      await database.close();
      if (backend === 'real') {
        await dropSchema(config.database.schema);
        await deleteKeys(config.redis.keyPrefix);
      }
    },
  };
}

async function newKeyHolder(app: App): Promise<{ accessToken: string; apiKey: string; apiKeyId: string }> {
  const signedIn = await signUp(app, { remoteAddress: randomIp() });
  const key = await createApiKey(app, signedIn.tokens.access_token, 'last use');
  return { accessToken: signedIn.tokens.access_token, apiKey: key.key, apiKeyId: key.id };
}

async function generateOk(app: App, credential: string): Promise<void> {
  expectOk(await generate(app, { credential, remoteAddress: randomIp() }));
}

async function keyRow(database: DatabaseHandle, apiKeyId: string): Promise<{ last_used_at: Date | null; revoked_at: Date | null }> {
  return database.db.selectFrom('api_keys').select(['last_used_at', 'revoked_at']).where('id', '=', apiKeyId).executeTakeFirstOrThrow();
}

describe.each(backends)('an API key’s use is recorded once the admission confirms the key (%s)', (backend) => {
  let simulator: Simulator;

  beforeAll(async () => {
    simulator = await startSimulator({ created: SIM_CREATED });
  });

  afterAll(async () => {
    await simulator.close();
  });

  async function withGateway(body: (gateway: OwnDatabaseGateway) => Promise<void>): Promise<void> {
    const gateway = await startOwnDatabaseGateway(backend, simulator);
    try {
      await body(gateway);
    } finally {
      await gateway.close();
    }
  }

  it('a key refused after its revocation keeps the last use it had before: last_used_at is not after revoked_at', async () => {
    await withGateway(async ({ app, database, closeApp }) => {
      const holder = await newKeyHolder(app);
      await generateOk(app, holder.apiKey);
      const judgedBy = Date.now();
      await sleep(20);
      const revoked = await app.inject({ method: 'DELETE', url: `/api/keys/${holder.apiKeyId}`, headers: bearer(holder.accessToken) });
      expect(revoked.statusCode, revoked.body).toBe(204);
      await sleep(20);
      // The judged key takes the fast path; the admission finds it revoked, the full check refuses it.
      expectError(await generate(app, { credential: holder.apiKey, remoteAddress: randomIp() }), 401, 'invalid_api_key');

      await closeApp();
      const row = await keyRow(database, holder.apiKeyId);
      expect(row.revoked_at).not.toBeNull();
      expect(row.last_used_at, 'the judged generation is a use').not.toBeNull();
      expect(row.last_used_at!.getTime(), 'last_used_at against revoked_at').toBeLessThanOrEqual(row.revoked_at!.getTime());
      expect(row.last_used_at!.getTime(), 'last_used_at is the judged generation').toBeLessThanOrEqual(judgedBy);
    });
  });

  it('a key used on the fast path after its first generation gets the time of its last use', async () => {
    await withGateway(async ({ app, database, closeApp }) => {
      const holder = await newKeyHolder(app);
      // The first generation checks the key in full; the next ones are confirmed by the admission alone.
      await generateOk(app, holder.apiKey);
      await sleep(20);
      const fastPathFrom = Date.now();
      await generateOk(app, holder.apiKey);
      await generateOk(app, holder.apiKey);
      const done = Date.now();

      await closeApp();
      const row = await keyRow(database, holder.apiKeyId);
      expect(row.revoked_at).toBeNull();
      expect(row.last_used_at, 'a confirmed use is recorded').not.toBeNull();
      expect(row.last_used_at!.getTime()).toBeGreaterThanOrEqual(fastPathFrom);
      expect(row.last_used_at!.getTime()).toBeLessThanOrEqual(done);
    });
  });
});
